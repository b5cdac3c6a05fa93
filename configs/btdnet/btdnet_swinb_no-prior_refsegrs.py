# Table VI: without prior knowledge: the background tokens are the learnable Delta alone (L_m unused by the head).
_base_ = ['../btdnet_swinb_refsegrs.py']
model = dict(decode_head=dict(use_prior_knowledge=False))
