# MCI width 768 (BERT's) instead of 256: the TwinStream head costs 84.6 GFLOPs at 512x512 instead of
# 11.2 (its three MCI rounds 73.2 instead of 9.5; Swin-B itself 93.6), see docs/paper_mapping.md.
_base_ = ['../btdnet_swinb_refsegrs.py']
model = dict(decode_head=dict(channels=768), rephrase_head=dict(in_channels=768, channels=768))
