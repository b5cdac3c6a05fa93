# Table VII: without L_bg: only lambda * L_fg of Eq. 11.
# Note: with the one 2-way softmax per pixel that Eq. 10 becomes here (docs/paper_mapping.md), a
# loss on target pixels alone is minimised by calling every pixel target; expect this run to
# over-segment.
_base_ = ['../btdnet_swinb_refsegrs.py']
model = dict(decode_head=dict(loss_decode=dict(use_bg=False)))
