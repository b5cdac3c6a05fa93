# MCI width 768 instead of 256 (DESIGN.md: about 1.5x Swin-B's cost per three rounds at 512x512).
_base_ = ['../btdnet_swinb_refsegrs.py']
model = dict(decode_head=dict(channels=768), rephrase_head=dict(in_channels=768, channels=768))
