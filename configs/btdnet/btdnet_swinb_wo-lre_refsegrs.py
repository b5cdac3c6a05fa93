# Table VII: without L_re: no rephrase head (D-MOLS off; L_total = L_ce).
_base_ = ['../btdnet_swinb_refsegrs.py']
model = dict(rephrase_head=None)
