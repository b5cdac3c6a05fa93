"""The paper's recipe (Sec. IV-B) as the RRSIS-D / RefSegRS configs build it."""

from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from btdnet.engine import BTDNetOptimWrapperConstructor
from btdnet.utils.benchmark import without_pretrained_weights

CONFIGS = Path(__file__).resolve().parents[2] / 'configs'
ENCODERS = ('backbone.vision.', 'backbone.text_encoder.')


@pytest.fixture(scope='module')
def paper_model_and_cfg():
    init_default_scope('mmseg')
    from mmseg.registry import MODELS

    cfg = Config.fromfile(str(CONFIGS / 'btdnet_swinb_rrsisd.py'))
    return MODELS.build(without_pretrained_weights(cfg.model)), cfg


def test_two_learning_rates_on_the_right_parameters(paper_model_and_cfg):
    model, cfg = paper_model_and_cfg
    constructor = BTDNetOptimWrapperConstructor(cfg.optim_wrapper, cfg.optim_wrapper.paramwise_cfg)
    groups = constructor.param_groups(model)
    seen = [name for g in groups for name in g['param_names']]
    # every trainable parameter in exactly one group
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    for group in groups:
        for name in group['param_names']:
            expected_lr = 1e-5 if name.startswith(ENCODERS) else 1e-4
            assert group['lr'] == pytest.approx(expected_lr), name
    lrs = {name: g['lr'] for g in groups for name in g['param_names']}
    # the fused modules (BSC), the decoder and the rephrase head learn at 1e-4
    assert any(n.startswith('backbone.bsc.') for n in lrs)
    assert all(lrs[n] == pytest.approx(1e-4) for n in lrs if n.startswith('backbone.bsc.'))
    assert any(n.startswith('rephrase_head.') for n in lrs)
    # no weight decay on norms, position embeddings, relative-position tables
    decay = {name: g['weight_decay'] for g in groups for name in g['param_names']}
    for name, value in decay.items():
        free = (
            'norm' in name
            or 'LayerNorm' in name
            or 'position_embeddings' in name
            or 'relative_position_bias_table' in name
        )
        if free:
            assert value == 0.0, name
    assert decay['backbone.vision.stages.0.blocks.0.ffn.layers.0.0.weight'] == 0.01


def test_schedule_is_poly_50_epochs_batch_2_per_gpu_best_by_oiou(paper_model_and_cfg):
    _, cfg = paper_model_and_cfg
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.lr == 1e-4
    (poly,) = cfg.param_scheduler
    assert (poly.type, poly.power, poly.eta_min, poly.end) == ('PolyLR', 0.9, 0.0, 50)
    assert poly.convert_to_iter_based  # decays every iteration
    assert cfg.train_cfg.max_epochs == 50
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.default_hooks.checkpoint.save_best == 'oIoU'
    assert cfg.test_dataloader.dataset.split == 'test'
    assert cfg.val_dataloader.dataset.split == 'val'
