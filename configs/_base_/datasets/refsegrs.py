# RefSegRS (Yuan et al., RRSIS, TGRS 2024): 4,420 sentences (2,172 / 413 / 1,817), 512x512 TIFs.
# Layout (as it ships; see README "Datasets"):
#   data/refsegrs/images/<id>.tif   data/refsegrs/masks/<id>.tif
#   data/refsegrs/output_phrase_{train,val,test}.txt   (lines `<id> <expression>`)
# Validate it with: python tools/analysis_tools/check_dataset.py configs/_base_/datasets/refsegrs.py
# Normalisation lives in the model's SegDataPreProcessor (mean=[123.675, 116.28, 103.53],
# std=[58.395, 57.12, 57.375], bgr_to_rgb=True, size=(512, 512)).
# Batch 8 = 2 per GPU x 4 GPUs (paper, Sec. IV-B).
dataset_type = 'RefSegRSDataset'
data_root = 'data/refsegrs'
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
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='val', pipeline=test_pipeline),
)
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='test', pipeline=test_pipeline),
)
# Pr@0.5-0.9, oIoU, mIoU, per-category mIoU as LAVT/RMSIN compute them, at the original image size;
# score_at='input' scores at the network input size instead, as those papers do.
val_evaluator = dict(type='RRSISMetric')
test_evaluator = dict(type='RRSISMetric')
