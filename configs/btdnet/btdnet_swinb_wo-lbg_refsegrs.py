# Table VII: without L_bg: only lambda * L_fg of Eq. 11.
# Note: with the 2-way softmax of Eq. 10 (DESIGN.md), a loss on target pixels alone is minimised by
# calling every pixel target; expect this run to over-segment.
_base_ = ['../btdnet_swinb_refsegrs.py']
model = dict(decode_head=dict(loss_decode=dict(use_bg=False)))
