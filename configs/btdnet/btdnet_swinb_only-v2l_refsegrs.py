# Table V: "only V2L": BSC on all stages, updating the visual features only.
_base_ = ['../btdnet_swinb_refsegrs.py']
model = dict(backbone=dict(one_way=True))
