# Table V: BSC on stages 1-3.
_base_ = ['../btdnet_swinb_refsegrs.py']
model = dict(backbone=dict(bsc_stages=(True, True, True, False)))
