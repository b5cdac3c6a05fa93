# Table VI: B = 3 background tokens (pools of sizes 1 and 2).
_base_ = ['../btdnet_swinb_refsegrs.py']
model = dict(decode_head=dict(bg_pool_sizes=(1, 2)))
