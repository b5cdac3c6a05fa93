# What every referring dataset config shares: the 512x512 pipelines, the dataloaders (2 samples
# per GPU for training, as the paper's 4 GPUs x 2) and the RRSIS evaluator. A dataset config
# inherits this and sets only the dataset type and root (rrsisd.py, refsegrs.py, synthetic_rrsis.py).
# Normalisation lives in the model's SegDataPreProcessor (mean=[123.675, 116.28, 103.53],
# std=[58.395, 57.12, 57.375], bgr_to_rgb=True, size=(512, 512)).
crop_size = (512, 512)

train_pipeline = [
    dict(type='LoadRSImageFromFile'),
    dict(type='LoadReferringMask'),
    dict(type='Resize', scale=crop_size, keep_ratio=False),
    dict(type='ExtractKeyPhraseSpans'),
    dict(type='PackReferringInputs'),
]
# The mask is loaded after the resize, so the ground truth keeps the original size (as in mmseg).
test_pipeline = [
    dict(type='LoadRSImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=False),
    dict(type='LoadReferringMask'),
    dict(type='ExtractKeyPhraseSpans'),
    dict(type='PackReferringInputs'),
]

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(split='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(split='val', pipeline=test_pipeline),
)
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(split='test', pipeline=test_pipeline),
)
# Pr@0.5-0.9, oIoU, mIoU, per-category mIoU as LAVT/RMSIN compute them, at the original image size;
# score_at='input' scores at the network input size instead, as those papers do.
val_evaluator = dict(type='RRSISMetric')
test_evaluator = dict(type='RRSISMetric')
