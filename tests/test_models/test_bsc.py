"""BidirectionalSpatialCorrelation (Eq. 2-4) against a literal Unfold + matmul reference.

``bsc_unfold_reference`` is the reference implementation: it follows the paper's equations
step by step (unfold the feature map into k x k patches, matmul, gate after gathering) and uses
the parameters of a :class:`BidirectionalSpatialCorrelation`. ``tools/analysis_tools/
benchmark_bsc.py`` times it against the module.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from btdnet.models.layers import BidirectionalSpatialCorrelation


def unfold_v2l_affinity(bsc, visual, text):
    """Literal W_v2l: W_v = Unfold(V, k) (Eq. 2), then sum_k alpha_k W_v x Q_k L (Eq. 3).

    Args:
        bsc (BidirectionalSpatialCorrelation): The module whose parameters are used.
        visual (Tensor): (B, C, H, W) V_i.
        text (Tensor): (B, N, D) L_i.

    Returns:
        Tensor: (B, HW, N) unnormalised affinity.
    """
    c = visual.shape[1]
    w_v2l = 0
    for k, alpha, proj in zip(bsc.v2l_kernels, bsc.v2l_alpha, bsc.v2l_filters):
        patches = F.unfold(visual, k, padding=k // 2).transpose(1, 2)  # (B, HW, k^2 C)
        w_v2l = w_v2l + alpha * (patches @ proj(text).transpose(1, 2)) / math.sqrt(k * k * c)
    return w_v2l


def bsc_unfold_reference(bsc, visual, text, text_mask):
    """Literal Eq. 2-4 with the parameters of ``bsc``.

    Args:
        bsc (BidirectionalSpatialCorrelation): The module whose parameters are used.
        visual (Tensor): (B, C, H, W) V_i.
        text (Tensor): (B, N, D) L_i.
        text_mask (Tensor): (B, N), 1 for real tokens.

    Returns:
        tuple[Tensor, Tensor]: V'_i (B, C, H, W) and L'_i (B, N, D).
    """
    b, c, h, w = visual.shape
    d = text.shape[2]
    mask = text_mask.bool()

    # vision -> language (Eq. 2-3), softmax over the real tokens
    w_v2l = unfold_v2l_affinity(bsc, visual, text)
    w_v2l = w_v2l.masked_fill(~mask[:, None, :], float('-inf')).softmax(dim=-1)  # (B, HW, N)
    # Eq. 4: Gate_v = 1x1 conv (D -> C) + InstanceNorm on the gathered text, then the residual
    gathered = (w_v2l @ text).transpose(1, 2).reshape(b, d, h, w)
    conv = bsc.gate_v_conv
    gate = F.conv2d(gathered, conv.weight[:, :, None, None], conv.bias)
    norm = bsc.gate_v_norm
    gate = F.instance_norm(gate, weight=norm.weight, bias=norm.bias, eps=norm.eps)
    visual_out = gate * visual + visual
    if bsc.one_way:
        return visual_out, text

    # language -> vision. Eq. 2: W_l = Unfold(L, k) over token windows (padding tokens as zeros)
    tokens = (text * mask[..., None]).transpose(1, 2)  # (B, D, N)
    flat = visual.flatten(2)  # V^f (B, C, HW)
    w_l2v = 0
    for k, beta, proj in zip(bsc.l2v_kernels, bsc.l2v_beta, bsc.l2v_keys):
        left = (k - 1) // 2
        padded = F.pad(tokens, (left, k - 1 - left)).unsqueeze(2)  # (B, D, 1, N + k - 1)
        windows = F.unfold(padded, (1, k)).transpose(1, 2)  # (B, N, D k)
        keys = windows @ proj.weight.reshape(c, d * k).t() + proj.bias  # (B, N, C)
        w_l2v = w_l2v + beta * (keys @ flat) / math.sqrt(c)  # Eq. 3
    w_l2v = w_l2v.softmax(dim=-1)  # over pixels
    gathered = w_l2v @ flat.transpose(1, 2)  # (B, N, C)
    conv = bsc.gate_l_conv
    gate = gathered @ conv.weight[:, :, 0].t() + conv.bias  # (B, N, D)
    norm = bsc.gate_l_norm
    text_out = text.clone()
    for i in range(b):  # InstanceNorm over the real tokens of each sentence
        real = gate[i, mask[i]].t()[None]  # (1, D, n_real)
        g = F.instance_norm(real, weight=norm.weight, bias=norm.bias, eps=norm.eps)[0].t()
        text_out[i, mask[i]] = g * text[i, mask[i]] + text[i, mask[i]]
    return visual_out, text_out


def _randomise(module):
    """Non-trivial alphas, betas and norm affines, so the check sees every parameter."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if 'alpha' in name or 'beta' in name or 'norm' in name:
                p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) + 0.5)
    return module


def _inputs(b=2, c=8, h=7, w=9, n=6, d=12, dtype=torch.float64, lengths=(6, 3)):
    gen = torch.Generator().manual_seed(0)
    visual = torch.randn(b, c, h, w, generator=gen, dtype=dtype)
    text = torch.randn(b, n, d, generator=gen, dtype=dtype)
    mask = torch.zeros(b, n, dtype=torch.long)
    for i, length in enumerate(lengths):
        mask[i, :length] = 1
    return visual, text, mask


@pytest.mark.parametrize(
    'kwargs',
    [
        dict(),
        dict(one_way=True),
        dict(v2l_kernels=(3,), l2v_kernels=(2,)),
        dict(v2l_kernels=(1, 5, 7), l2v_kernels=(1, 4)),
    ],
)
def test_bsc_matches_unfold_reference(kwargs):
    torch.manual_seed(0)
    bsc = _randomise(BidirectionalSpatialCorrelation(8, 12, **kwargs)).double()
    visual, text, mask = _inputs()
    v_out, t_out = bsc(visual, text, mask)
    v_ref, t_ref = bsc_unfold_reference(bsc, visual, text, mask)
    torch.testing.assert_close(v_out, v_ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(t_out, t_ref, atol=1e-10, rtol=0)
    # the fusion did something: a broken residual (identity) would pass the comparison above
    assert (v_out - visual).abs().max() > 1e-3
    if not kwargs.get('one_way'):
        assert (t_out[0] - text[0]).abs().max() > 1e-3


def test_v2l_affinity_is_the_unfold_matmul():
    bsc = _randomise(BidirectionalSpatialCorrelation(8, 12, v2l_kernels=(1, 3, 5, 7))).double()
    visual, text, _ = _inputs()
    got = bsc.v2l_affinity(visual, text)  # (B, N, H, W)
    ref = unfold_v2l_affinity(bsc, visual, text)  # (B, HW, N)
    torch.testing.assert_close(got.flatten(2).transpose(1, 2), ref, atol=1e-10, rtol=0)


def test_bsc_float32_close_to_reference():
    bsc = _randomise(BidirectionalSpatialCorrelation(8, 12))
    visual, text, mask = _inputs(dtype=torch.float32)
    for out, ref in zip(bsc(visual, text, mask), bsc_unfold_reference(bsc, visual, text, mask)):
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('batch', [1, 2])
def test_channels_last_input_as_the_extractor_passes_it(batch):
    """Swin's (B, HW, C) tokens viewed as (B, C, H, W): same result, V' channels-last too.

    Batch 1 runs the convolution channels-last (filters too); batch 2 copies the map first.
    """
    bsc = _randomise(BidirectionalSpatialCorrelation(8, 12, l2v_kernels=(2, 4))).double()
    visual, text, mask = _inputs(b=batch, lengths=(6, 3)[:batch])
    tokens = visual.flatten(2).transpose(1, 2).contiguous()  # (B, HW, C), as Swin holds them
    strided = tokens.transpose(1, 2).reshape(visual.shape)
    assert strided.is_contiguous(memory_format=torch.channels_last)
    v_out, t_out = bsc(strided, text, mask)
    v_ref, t_ref = bsc_unfold_reference(bsc, visual, text, mask)
    torch.testing.assert_close(v_out, v_ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(t_out, t_ref, atol=1e-10, rtol=0)
    # the next Swin stage reads V' as (B, HW, C) without a copy
    assert v_out.flatten(2).transpose(1, 2).is_contiguous()


def test_one_pixel_map_in_training():
    """A 1 x 1 map (stage 4 of a 32 x 32 input): the normalised gate is 0, so V' = V (1 + bias).

    (nn.InstanceNorm2d itself refuses one spatial element in training mode.)
    """
    bsc = _randomise(BidirectionalSpatialCorrelation(8, 12)).double().train()
    visual, text, mask = _inputs(h=1, w=1)
    v_out, _ = bsc(visual, text, mask)
    expected = visual * (1 + bsc.gate_v_norm.bias.detach())[None, :, None, None]
    torch.testing.assert_close(v_out, expected, atol=1e-6, rtol=0)


def test_bf16_autocast_keeps_the_norm_statistics_in_float32():
    """The gate's variance, a sum of cancelling terms, stays >= 0 and finite under autocast.

    Identical tokens make every pixel's gathered text the same: the true variance is 0 and the
    normalised gate 0, so V' = V (1 + bias) in float32. (In bfloat16 any InstanceNorm of a
    constant map normalises rounding noise; only finiteness is asked there.)
    """
    bsc = _randomise(BidirectionalSpatialCorrelation(8, 12)).eval()
    visual, text, mask = _inputs(dtype=torch.float32)
    text = text[:, :1].expand_as(text).contiguous()  # all tokens alike
    expected = visual * (1 + bsc.gate_v_norm.bias.detach())[None, :, None, None]
    torch.testing.assert_close(bsc(visual, text, mask)[0], expected, atol=1e-3, rtol=0)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        v_out, t_out = bsc(visual, text, mask)
    assert torch.isfinite(v_out).all() and torch.isfinite(t_out).all()
    # Nearly alike tokens (small true variance): float32 statistics keep bfloat16 within ~0.6
    # of float32; computed in bfloat16 they were off by 4-7.
    for spread in (1e-2, 1e-1):
        visual, text, mask = _inputs(dtype=torch.float32, h=32, w=32)
        text = text[:, :1] + spread * text
        with torch.autocast('cpu', dtype=torch.bfloat16):
            v_bf16, _ = bsc(visual, text, mask)
        assert (v_bf16.float() - bsc(visual, text, mask)[0]).abs().max() < 1.5
    # with distinct tokens it stays close to float32
    visual, text, mask = _inputs(dtype=torch.float32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        v_bf16, t_bf16 = bsc(visual, text, mask)
    v_ref, t_ref = bsc(visual, text, mask)
    torch.testing.assert_close(v_bf16.float(), v_ref, atol=0.1, rtol=0.05)
    torch.testing.assert_close(t_bf16.float(), t_ref, atol=0.1, rtol=0.05)


def test_bsc_shapes_and_registry():
    bsc = MODELS.build(
        dict(type='BidirectionalSpatialCorrelation', visual_channels=16, text_channels=24)
    )
    visual, text, mask = _inputs(c=16, d=24, h=5, w=4, dtype=torch.float32)
    v_out, t_out = bsc(visual, text, mask)
    assert v_out.shape == visual.shape and t_out.shape == text.shape


def test_padding_tokens_do_not_change_real_outputs():
    bsc = _randomise(BidirectionalSpatialCorrelation(8, 12)).double()
    visual, text, mask = _inputs(lengths=(6, 3))
    v_out, t_out = bsc(visual, text, mask)
    # append 4 padding tokens with arbitrary features, and scramble the existing padded slots
    extra = torch.randn(2, 4, 12, dtype=torch.float64) * 10
    text_long = torch.cat([text, extra], dim=1)
    text_long[1, 3:6] = torch.randn(3, 12, dtype=torch.float64) * 10
    mask_long = torch.cat([mask, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    v_long, t_long = bsc(visual, text_long, mask_long)
    torch.testing.assert_close(v_long, v_out, atol=1e-10, rtol=0)
    torch.testing.assert_close(t_long[0, :6], t_out[0, :6], atol=1e-10, rtol=0)
    torch.testing.assert_close(t_long[1, :3], t_out[1, :3], atol=1e-10, rtol=0)
    # padded tokens come out unchanged
    assert torch.equal(t_long[1, 3:], text_long[1, 3:])
    assert torch.equal(t_long[0, 6:], text_long[0, 6:])


def test_one_way_builds_no_l2v_and_keeps_text():
    torch.manual_seed(0)
    two_way = BidirectionalSpatialCorrelation(8, 12)
    one_way = BidirectionalSpatialCorrelation(8, 12, one_way=True)
    names = {n for n, _ in one_way.named_parameters()}
    assert names == {
        'v2l_alpha',
        'v2l_filters.0.weight',
        'v2l_filters.0.bias',
        'v2l_filters.1.weight',
        'v2l_filters.1.bias',
        'v2l_filters.2.weight',
        'v2l_filters.2.bias',
        'gate_v_conv.weight',
        'gate_v_conv.bias',
        'gate_v_norm.weight',
        'gate_v_norm.bias',
    }
    missing, unexpected = one_way.load_state_dict(two_way.state_dict(), strict=False)
    assert not missing and all('l2v' in k or 'gate_l' in k for k in unexpected)
    visual, text, mask = _inputs(dtype=torch.float32)
    v1, t1 = one_way(visual, text, mask)
    v2, _ = two_way(visual, text, mask)
    assert t1 is text
    torch.testing.assert_close(v1, v2)


def test_every_parameter_gets_a_gradient():
    bsc = _randomise(BidirectionalSpatialCorrelation(8, 12))
    visual, text, mask = _inputs(dtype=torch.float32)
    visual.requires_grad_(True)
    text.requires_grad_(True)
    v_out, t_out = bsc(visual, text, mask)
    ((v_out**2).sum() + (t_out**2).sum()).backward()
    for name, p in bsc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # padded tokens pass unchanged: their gradient is the identity's
    torch.testing.assert_close(text.grad[1, 3:], 2 * text[1, 3:].detach())


def test_bsc_rejects_bad_arguments():
    with pytest.raises(ValueError, match='odd'):
        BidirectionalSpatialCorrelation(8, 12, v2l_kernels=(1, 2))
    bsc = BidirectionalSpatialCorrelation(8, 12)
    visual, text, mask = _inputs(c=6, dtype=torch.float32)
    with pytest.raises(ValueError, match=r'visual \(B, 8, H, W\)'):
        bsc(visual, text, mask)
    visual, text, mask = _inputs(dtype=torch.float32)
    with pytest.raises(ValueError, match='disagree'):
        bsc(visual, text, mask[:, :4])
