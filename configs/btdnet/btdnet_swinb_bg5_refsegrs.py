# Table VI: B = 5 background tokens (pools of sizes 1 and 4; the default).
_base_ = ['../btdnet_swinb_refsegrs.py']
model = dict(decode_head=dict(bg_pool_sizes=(1, 4)))
