# Table VI: B = 7 background tokens (pools of sizes 1, 2 and 4).
_base_ = ['../btdnet_swinb_refsegrs.py']
model = dict(decode_head=dict(bg_pool_sizes=(1, 2, 4)))
