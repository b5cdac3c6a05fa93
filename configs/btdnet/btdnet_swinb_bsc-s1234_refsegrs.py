# Table V: BSC on stages 1-4 (the full model, written out for the table).
_base_ = ['../btdnet_swinb_refsegrs.py']
model = dict(backbone=dict(bsc_stages=(True, True, True, True)))
