"""The paper's parameter groups: encoders at lr x 0.1, no decay on norms and position tables."""

import pytest
import torch
import torch.nn as nn

from btdnet.engine import BTDNetOptimWrapperConstructor


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(3, 2))


class TextEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.position_embeddings = nn.Embedding(5, 4)
        self.layer = nn.Linear(4, 4)


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.vision = Encoder()
        self.text_encoder = TextEncoder()
        self.fusion = nn.Conv2d(4, 4, 1)
        self.fusion_norm = nn.InstanceNorm2d(4, affine=True)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.decode_head = nn.Linear(4, 2)
        self.frozen = nn.Parameter(torch.zeros(1), requires_grad=False)


def _constructor(**paramwise):
    cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.01))
    return BTDNetOptimWrapperConstructor(cfg, paramwise)


def test_groups_assign_lr_and_decay_by_name_and_module_type():
    model = Model()
    groups = {g['name']: g for g in _constructor().param_groups(model)}
    expected = {
        'encoder': {
            'backbone.vision.proj.weight',
            'backbone.vision.proj.bias',
            'backbone.text_encoder.layer.weight',
            'backbone.text_encoder.layer.bias',
        },
        'encoder_no_decay': {
            'backbone.vision.norm.weight',
            'backbone.vision.norm.bias',
            'backbone.vision.relative_position_bias_table',
            'backbone.text_encoder.position_embeddings.weight',
        },
        'decoder': {
            'backbone.fusion.weight',
            'backbone.fusion.bias',
            'decode_head.weight',
            'decode_head.bias',
        },
        'decoder_no_decay': {'backbone.fusion_norm.weight', 'backbone.fusion_norm.bias'},
    }
    assert {k: set(g['param_names']) for k, g in groups.items()} == expected
    assert groups['encoder']['lr'] == pytest.approx(1e-5)
    assert groups['encoder_no_decay']['lr'] == pytest.approx(1e-5)
    assert groups['decoder']['lr'] == pytest.approx(1e-4)
    assert groups['encoder']['weight_decay'] == 0.01
    assert groups['decoder_no_decay']['weight_decay'] == 0.0
    # every trainable parameter exactly once, the frozen one nowhere
    names = [n for g in groups.values() for n in g['param_names']]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(names) == sorted(trainable)


def test_builds_optim_wrapper_with_the_groups():
    wrapper = _constructor(encoder_lr_mult=0.5)(Model())
    lrs = sorted({g['lr'] for g in wrapper.optimizer.param_groups})
    assert lrs == pytest.approx([5e-5, 1e-4])
    assert isinstance(wrapper.optimizer, torch.optim.AdamW)


def test_unknown_paramwise_key_is_an_error():
    with pytest.raises(KeyError, match='encoder_lr'):
        _constructor(encoder_lr=0.1)
