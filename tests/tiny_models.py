"""The paper's model configs on tiny encoders, for tests that build them on the CPU."""

import copy


def shrink_paper_model(model_cfg, tiny_model_cfg):
    """The paper model's switches on tiny encoders: widths / 8, tiny Swin and BERT."""
    cfg = copy.deepcopy(model_cfg)
    tiny = tiny_model_cfg
    cfg.data_preprocessor = copy.deepcopy(tiny.data_preprocessor)
    cfg.backbone.vision = copy.deepcopy(tiny.backbone.vision)
    cfg.backbone.text_encoder = copy.deepcopy(tiny.backbone.text_encoder)
    head = cfg.decode_head
    head.update(
        in_channels=tiny.decode_head.in_channels,
        text_channels=32,
        channels=head.channels // 8,
        num_points=2,
    )
    if cfg.get('rephrase_head') is not None:
        cfg.rephrase_head.update(
            in_channels=cfg.rephrase_head.in_channels // 8,
            channels=cfg.rephrase_head.channels // 8,
            text_channels=32,
        )
    if cfg.get('no_target_head') is not None:
        cfg.no_target_head.update(
            in_channels=cfg.no_target_head.in_channels // 8,
            channels=cfg.no_target_head.channels // 8,
        )
    return cfg
