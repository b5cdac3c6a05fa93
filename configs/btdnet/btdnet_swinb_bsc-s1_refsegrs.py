# Table V: BSC on stage 1 only (stages 2-4 pass V_i, L_i unchanged).
_base_ = ['../btdnet_swinb_refsegrs.py']
model = dict(backbone=dict(bsc_stages=(True, False, False, False)))
