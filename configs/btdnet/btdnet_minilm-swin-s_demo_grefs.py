# The CPU demo on sentences with no target or several (`python tools/demo.py --task generalized`):
# the `make demo` model (btdnet_minilm-swin-s_demo_synthetic.py) plus a no-target head (not in
# the paper), on the synthetic generator's generalized task in the gRefCOCO layout. By hand:
#   python tools/dataset_converters/make_synthetic_rrsis.py data/synthetic_grefs_demo \
#       --task generalized --num-images 2000 --eval-images 150 --size 128 --object-scale 1.8
#   python tools/train.py configs/btdnet/btdnet_minilm-swin-s_demo_grefs.py
# Its recipe does not yet reach the goals of docs/user_guides/generalized.md: see that page.
_base_ = ['./btdnet_minilm-swin-s_demo_synthetic.py']

data_root = 'data/synthetic_grefs_demo'
grefs_layout = dict(
    type='GRefCOCODataset',
    data_root=data_root,
    ann_file='grefs/grefs(unc).json',
    instances_file='grefs/instances.json',
    data_prefix=dict(img_path='images/grefs'),
)
train_dataloader = dict(dataset=grefs_layout)
val_dataloader = dict(dataset=grefs_layout)
test_dataloader = dict(dataset=dict(grefs_layout, split='test'))

width = 64  # the MCI width of the base config
model = dict(
    backbone=dict(
        # MiniLM is fixed, so L_m and L_0 of a sentence are constants: keep those of every
        # demo sentence (~10,200 sentences x 2, 18 KB each).
        text_encoder=dict(cache_size=24000),
    ),
    # Whether the sentence names anything in the image (a no-target sentence then gets an
    # empty mask), from the last MCI round's L* and V* and what the Fg-Bg predictor found.
    no_target_head=dict(type='NoTargetHead', in_channels=width, channels=width),
)
work_dir = 'work_dirs/demo_grefs'
