"""BidirectionalFeatureExtractor (Eq. 1) with tiny Swin + BERT, and the Swin converter."""

import importlib.util
import os.path as osp
import re

import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from btdnet.models.backbones import BidirectionalFeatureExtractor

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_BERT = dict(
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=2,
    intermediate_size=64,
    vocab_size=30522,
    max_position_embeddings=64,
)
DEPTHS, HEADS = (2, 2, 2, 2), (1, 2, 4, 8)


def vision_cfg(kind, **kwargs):
    if kind == 'mmpretrain':
        cfg = dict(
            type='mmpretrain.SwinTransformer',
            arch=dict(embed_dims=16, depths=DEPTHS, num_heads=HEADS),
            pad_small_map=True,
        )
    else:
        cfg = dict(type='SwinTransformer', embed_dims=16, depths=DEPTHS, num_heads=HEADS)
    cfg.update(window_size=4, drop_path_rate=0.0)
    cfg.update(kwargs)
    return cfg


def build(kind='mmseg', vision_kwargs=None, **kwargs):
    torch.manual_seed(0)
    cfg = dict(
        type='BidirectionalFeatureExtractor',
        vision=vision_cfg(kind, **(vision_kwargs or {})),
        text_encoder=dict(type='BertTextEncoder', bert_config=TINY_BERT, stage_layers=(1, 2, 3, 4)),
    )
    cfg.update(kwargs)
    model = MODELS.build(cfg)
    assert isinstance(model, BidirectionalFeatureExtractor)
    return model


TEXTS = ['the red vehicle on the left', 'a pond']


def tokens(model, texts=TEXTS, with_masked=True):
    """The token tensors the segmentor hands the extractor ('vehicle' is the key phrase)."""
    spans = []
    for text in texts:
        start = text.find('vehicle')
        spans.append([(start, start + 7)] if start >= 0 else [])
    out = model.text_encoder.tokenize(texts, spans)
    if not with_masked:
        del out['masked_input_ids'], out['masked_attention_mask']
    return out


def images(b=2, size=64):
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize('kind', ['mmseg', 'mmpretrain'])
def test_output_shapes_and_gradients_reach_every_parameter(kind):
    model = build(kind).train()
    out = model(images(), **tokens(model))
    assert [tuple(v.shape) for v in out['visual']] == [
        (2, 16, 16, 16),
        (2, 32, 8, 8),
        (2, 64, 4, 4),
        (2, 128, 2, 2),
    ]
    for key in ('text', 'masked_text'):
        assert out[key].shape == (2, 20, 32)
    for key in ('text_mask', 'masked_mask', 'input_ids', 'attention_mask'):
        assert out[key].shape == (2, 20)
    # E_m masks 'vehicle' of the first sentence only
    diff = (out['masked_mask'] != out['text_mask']).nonzero().tolist()
    assert diff == [[0, 3]]
    loss = sum((v**2).mean() for v in out['visual'])
    loss = loss + (out['text'] ** 2).mean() + (out['masked_text'] ** 2).mean()
    loss.backward()
    no_grad = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)
    ]
    assert no_grad == []
    names = [n for n, _ in model.named_parameters()]
    assert all(n.startswith(('vision.', 'text_encoder.', 'bsc.')) for n in names)
    assert any(n.startswith('bsc.3.l2v_keys') for n in names)


def test_ablation_switches_drop_exactly_their_parameters():
    full = {n for n, _ in build().named_parameters()}
    one_way = {n for n, _ in build(one_way=True).named_parameters()}
    dropped = full - one_way
    assert one_way < full and dropped
    assert all(n.startswith('bsc.') and ('l2v' in n or 'gate_l' in n) for n in dropped)
    stage1 = build(bsc_stages=(True, False, False, False))
    names = {n for n, _ in stage1.named_parameters()}
    assert names == {n for n in full if not n.startswith(('bsc.1.', 'bsc.2.', 'bsc.3.'))}
    assert [type(m).__name__ for m in stage1.bsc] == [
        'BidirectionalSpatialCorrelation',
        'Identity',
        'Identity',
        'Identity',
    ]
    kernels = build(bsc_cfg=dict(v2l_kernels=(3,), l2v_kernels=(1,)))
    assert kernels.bsc[0].v2l_kernels == (3,) and len(kernels.bsc[0].l2v_keys) == 1


def test_without_bsc_equals_bare_swin_and_bert():
    model = build(bsc_stages=(False,) * 4).eval()
    x = images()
    with torch.no_grad():
        out = model(x, **tokens(model))
        bare = model.vision(x)
        text = model.text_encoder(out['input_ids'], out['attention_mask'])
    for got, ref in zip(out['visual'], bare):
        torch.testing.assert_close(got, ref)
    torch.testing.assert_close(out['text'], text)


def test_one_way_leaves_text_unchanged_and_updates_vision():
    model = build(one_way=True).eval()
    with torch.no_grad():
        out = model(images(), **tokens(model))
        plain = model.text_encoder(out['input_ids'], out['attention_mask'])
        bare = model.vision(images())
    torch.testing.assert_close(out['text'], plain)
    assert (out['visual'][0] - bare[0]).abs().max() > 1e-3


def test_masked_text_is_bert_of_masked_sentence():
    model = build().eval()
    with torch.no_grad():
        out = model(images(), **tokens(model))
        ids = model.text_encoder.tokenize(TEXTS, [[(8, 15)], []])
        ref = model.text_encoder(ids['masked_input_ids'], ids['masked_attention_mask'])
    torch.testing.assert_close(out['masked_text'], ref)


def test_masked_sentence_is_optional_or_taken_precomputed():
    """Without E_m the outputs lack L_m and the rest is unchanged; a given L_m is used as is."""
    model = build().eval().double()  # float64: batching E_m with E only changes rounding
    x = images().double()
    with torch.no_grad():
        full = model(x, **tokens(model))
        plain = model(x, **tokens(model, with_masked=False))
        masked = tokens(model)
        l_m = model.text_encoder(masked['masked_input_ids'], masked['masked_attention_mask'])
        given = model(
            x,
            **tokens(model, with_masked=False),
            masked_text=l_m,
            masked_attention_mask=masked['masked_attention_mask'],
        )
    assert 'masked_text' not in plain and 'masked_mask' not in plain
    for out in (plain, given):
        for got, ref in zip(out['visual'], full['visual']):
            torch.testing.assert_close(got, ref, atol=1e-10, rtol=0)
        torch.testing.assert_close(out['text'], full['text'], atol=1e-10, rtol=0)
    assert given['masked_text'] is l_m
    torch.testing.assert_close(full['masked_text'], l_m, atol=1e-10, rtol=0)


def test_padding_length_does_not_change_outputs():
    model = build().eval().double()  # float64: a longer padding only changes rounding
    x = images().double()
    with torch.no_grad():
        a = model(x, **tokens(model))
        model.text_encoder.max_length = 27
        b = model(x, **tokens(model))
    assert b['text'].shape == (2, 27, 32)
    for va, vb in zip(a['visual'], b['visual']):
        torch.testing.assert_close(va, vb, atol=1e-10, rtol=0)
    real = a['text_mask'].bool()
    torch.testing.assert_close(b['text'][:, :20][real], a['text'][real], atol=1e-10, rtol=0)
    real = a['masked_mask'].bool()
    torch.testing.assert_close(
        b['masked_text'][:, :20][real], a['masked_text'][real], atol=1e-10, rtol=0
    )


def test_clear_errors_for_bad_inputs_and_configs():
    model = build()
    with pytest.raises(ValueError, match=r'2 images but token ids \(1, 20\)'):
        model(images(2), **tokens(model, ['a car']))
    masked_ids = tokens(model)['masked_input_ids']
    with pytest.raises(ValueError, match='masked_attention_mask is needed'):
        model(images(2), **tokens(model, with_masked=False), masked_input_ids=masked_ids)
    with pytest.raises(ValueError, match='must agree'):
        build(bsc_stages=(True, True, True))
    with pytest.raises(ValueError, match='out_indices'):
        build(vision_kwargs=dict(out_indices=(3,)))


# --- pretrained Swin: missing file, official layout, converter ------------------------------


def load_converter():
    path = osp.join(REPO, 'tools', 'model_converters', 'swin2btdnet.py')
    spec = importlib.util.spec_from_file_location('swin2btdnet', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_relative_position_index(window):
    """The index as the official Swin code builds it."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing='ij'))
    coords = coords.flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += window - 1
    rel[:, :, 1] += window - 1
    rel[:, :, 0] *= 2 * window - 1
    return rel.sum(-1)


def official_patch_merging(x, hw, norm_weight, norm_bias, reduction):
    """The official Swin PatchMerging: concatenate 2x2 neighbours, LayerNorm, Linear."""
    b, _, c = x.shape
    x = x.view(b, *hw, c)
    x = torch.cat(
        [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1
    ).view(b, -1, 4 * c)
    return F.layer_norm(x, (4 * c,), norm_weight, norm_bias) @ reduction.t()


def fake_official_checkpoint(vision):
    """Random weights under the official Swin names, shaped like ``vision``."""
    gen = torch.Generator().manual_seed(5)
    official = {}
    for key, value in vision.state_dict().items():
        if re.match(r'norm[012]\.', key):
            continue  # the official model has one final norm only
        name = key.replace('stages.', 'layers.').replace('.w_msa.', '.')
        name = name.replace('.ffn.layers.0.0.', '.mlp.fc1.').replace('.ffn.layers.1.', '.mlp.fc2.')
        name = name.replace('patch_embed.projection.', 'patch_embed.proj.')
        name = name.replace('norm3.', 'norm.')
        if name.endswith('relative_position_index'):
            official[name] = official_relative_position_index(4)
        else:
            official[name] = torch.randn(value.shape, generator=gen)
    official['layers.0.blocks.1.attn_mask'] = torch.zeros(16, 16, 16)
    official['head.weight'] = torch.randn(10, 128, generator=gen)
    return official


@pytest.mark.parametrize('kind', ['mmseg', 'mmpretrain'])
def test_converted_official_checkpoint_loads_into_vision(kind, tmp_path):
    converter = load_converter()
    reference = build(kind)
    official = fake_official_checkpoint(reference.vision)
    converted = converter.convert_swin(official)
    path = tmp_path / 'swin_converted.pth'
    torch.save(dict(state_dict=converted), path)
    model = build(kind, vision_kwargs=dict(init_cfg=dict(type='Pretrained', checkpoint=str(path))))
    model.init_weights()
    state = model.vision.state_dict()
    assert not set(converted) - set(state)  # every converted tensor has a home
    # left to the model: the new out norms and the index buffers it computes itself
    left = {k for k in set(state) - set(converted) if not k.endswith('relative_position_index')}
    assert left == {f'{n}.{p}' for n in ('norm0', 'norm1', 'norm2') for p in ('weight', 'bias')}
    for key, value in converted.items():
        assert torch.equal(state[key], value), key
    # dropping the index is safe: the official formula equals the implementation's own buffer
    own = reference.vision.state_dict()['stages.0.blocks.0.attn.w_msa.relative_position_index']
    assert torch.equal(own, official_relative_position_index(4))
    # patch merging with converted weights computes what the official layer computes
    x = torch.randn(2, 16 * 16, 16)
    merged, hw = model.vision.stages[0].downsample(x, (16, 16))
    expected = official_patch_merging(
        x,
        (16, 16),
        official['layers.0.downsample.norm.weight'],
        official['layers.0.downsample.norm.bias'],
        official['layers.0.downsample.reduction.weight'],
    )
    assert tuple(hw) == (8, 8)
    torch.testing.assert_close(merged, expected, atol=1e-5, rtol=1e-5)


def test_missing_or_unconverted_swin_checkpoint_fails_clearly(tmp_path):
    missing = tmp_path / 'pretrain' / 'swin_base_patch4_window12_384_22k.pth'
    model = build(vision_kwargs=dict(init_cfg=dict(type='Pretrained', checkpoint=str(missing))))
    with pytest.raises(FileNotFoundError) as err:
        model.init_weights()
    message = str(err.value)
    assert str(missing) in message and 'swin2btdnet.py' in message
    assert 'swin_base_patch4_window12_384_22k.pth' in message

    official = tmp_path / 'official.pth'
    torch.save(dict(model=fake_official_checkpoint(model.vision)), official)
    model = build(vision_kwargs=dict(init_cfg=dict(type='Pretrained', checkpoint=str(official))))
    with pytest.raises(ValueError, match='official Swin release.*swin2btdnet'):
        model.init_weights()


def test_converter_rejects_non_swin_checkpoints():
    with pytest.raises(ValueError, match='not an official Swin'):
        load_converter().convert_swin({'stages.0.blocks.0.norm1.weight': torch.ones(2)})


# mmpretrain 1.2.0 resizes tables with scipy's interp2d, removed in SciPy 1.14: mmseg's Swin only
@pytest.mark.parametrize('kind', ['mmseg'])
def test_converted_checkpoint_loads_into_another_window_size(kind, tmp_path):
    official = fake_official_checkpoint(build(kind).vision)  # window 4
    path = tmp_path / 'swin_converted.pth'
    torch.save(dict(state_dict=load_converter().convert_swin(official)), path)
    init_cfg = dict(type='Pretrained', checkpoint=str(path))
    model = build(kind, vision_kwargs=dict(window_size=2, init_cfg=init_cfg))
    model.init_weights()  # the Swin resizes its 7x7 relative-position tables to 3x3
    state = model.vision.state_dict()
    assert state['stages.0.blocks.0.attn.w_msa.relative_position_bias_table'].shape == (9, 1)
    assert torch.equal(
        state['stages.1.blocks.0.norm1.weight'], official['layers.1.blocks.0.norm1.weight']
    )
