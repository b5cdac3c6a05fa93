"""Multi-scale Context Integration (Eq. 5-7): attention, kernel selection, shapes, padding."""

import pytest
import torch
from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttention

from btdnet.models.layers import mci
from btdnet.models.layers.mci import (
    CrossAttention,
    MSDeformAttn,
    MultiScaleContextIntegration,
    split_levels,
)

SHAPES = [(8, 8), (4, 4), (2, 2)]
NUM_TOKENS = sum(h * w for h, w in SHAPES)


# Tiny tensors: one intra-op thread is much faster than several on a shared CPU.
pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


def _reference_points(batch):
    return MultiScaleContextIntegration.reference_points(
        SHAPES, batch, len(SHAPES), torch.device('cpu'), torch.float32
    )


def test_cross_attention_shape_and_key_padding():
    torch.manual_seed(0)
    attn = CrossAttention(16, num_heads=4, kv_dims=8).eval()
    query, keys = torch.randn(2, 5, 16), torch.randn(2, 7, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 0]])
    out = attn(query, keys, mask)
    assert out.shape == (2, 5, 16)
    # Padded keys may hold anything: the output must not move.
    noisy = keys.clone()
    noisy[mask == 0] = 1e3 * torch.randn(int((mask == 0).sum()), 8)
    torch.testing.assert_close(attn(query, noisy, mask), out)
    # Without the mask they do matter (the test above can fail).
    assert not torch.allclose(attn(query, noisy), attn(query, keys))


def test_cross_attention_rejects_bad_mask():
    attn = CrossAttention(16, num_heads=4)
    with pytest.raises(ValueError, match='key_mask must have shape'):
        attn(torch.randn(2, 5, 16), torch.randn(2, 7, 16), torch.ones(2, 6))
    with pytest.raises(ValueError, match='divisible'):
        CrossAttention(10, num_heads=4)


def test_ms_deform_attn_matches_mmcv_forward():
    """Our forward (kernel selection) computes what mmcv's own forward computes on CPU."""
    torch.manual_seed(0)
    ours = MSDeformAttn(16, num_heads=4, num_levels=3, num_points=2).eval()
    ref = MultiScaleDeformableAttention(
        16, num_heads=4, num_levels=3, num_points=2, dropout=0.0, batch_first=True
    ).eval()
    for p in ours.parameters():  # move away from the zero-offset initialisation
        torch.nn.init.normal_(p, std=0.2)
    ref.load_state_dict(ours.state_dict())
    query = torch.randn(2, NUM_TOKENS, 16)
    ref_points = _reference_points(2)
    shapes_t = torch.tensor(SHAPES)
    start = torch.tensor([0, 64, 80])
    expected = ref(
        query,
        reference_points=ref_points,
        spatial_shapes=shapes_t,
        level_start_index=start,
    )
    out = ours(query, ref_points, SHAPES)
    assert out.shape == (2, NUM_TOKENS, 16)
    torch.testing.assert_close(out, expected)


def test_ms_deform_attn_rejects_wrong_shapes():
    attn = MSDeformAttn(16, num_heads=4, num_levels=3, num_points=2)
    with pytest.raises(ValueError, match='levels whose sizes sum'):
        attn(torch.randn(1, NUM_TOKENS, 16), _reference_points(1), SHAPES[:2])


@pytest.mark.parametrize(
    'device, has_cuda_ops, expected',
    [
        ('cpu', False, 'pytorch'),
        ('cpu', True, 'pytorch'),
        ('cuda', False, 'pytorch'),  # CUDA tensor, mmcv built without CUDA ops: no failure
        ('cuda:0', True, 'mmcv_cuda'),
    ],
)
def test_kernel_selection(monkeypatch, device, has_cuda_ops, expected):
    monkeypatch.setattr(mci, 'mmcv_has_cuda_ops', lambda: has_cuda_ops)
    assert mci.select_ms_deform_attn_impl(torch.device(device)) == expected


def test_mmcv_has_cuda_ops_reads_the_build():
    from mmcv.ops import get_compiling_cuda_version

    built_with_cuda = get_compiling_cuda_version() != 'not available'
    assert mci.mmcv_has_cuda_ops() is built_with_cuda


@pytest.mark.parametrize('impl', ['pytorch', 'mmcv_cuda'])
def test_ms_deform_attn_dispatches_on_selection(monkeypatch, impl):
    """Faking the condition on CPU: the kernel is called only where the selection says so."""
    calls = []

    class FakeKernel:
        @staticmethod
        def apply(value, shapes, starts, locations, weights, step):
            calls.append((shapes.tolist(), starts.tolist(), step))
            return mci.multi_scale_deformable_attn_pytorch(value, shapes, locations, weights)

    monkeypatch.setattr(mci, 'select_ms_deform_attn_impl', lambda device: impl)
    monkeypatch.setattr(mci, 'MultiScaleDeformableAttnFunction', FakeKernel)
    torch.manual_seed(0)
    attn = MSDeformAttn(16, num_heads=4, num_levels=3, num_points=2).eval()
    out = attn(torch.randn(1, NUM_TOKENS, 16), _reference_points(1), SHAPES)
    assert out.shape == (1, NUM_TOKENS, 16)
    if impl == 'mmcv_cuda':
        assert calls == [([[8, 8], [4, 4], [2, 2]], [0, 64, 80], attn.im2col_step)]
    else:
        assert calls == []


def _mci_inputs(batch=2, text_len=20, real=(7, 12)):
    visual = [
        torch.randn(batch, 16, 8, 8),
        torch.randn(batch, 32, 4, 4),
        torch.randn(batch, 64, 2, 2),
    ]
    text = torch.randn(batch, text_len, 24)
    mask = torch.zeros(batch, text_len, dtype=torch.long)
    for b, n in enumerate(real):
        mask[b, :n] = 1
    return visual, text, mask


def test_mci_shapes_and_rounds():
    torch.manual_seed(0)
    module = MultiScaleContextIntegration(
        (16, 32, 64), 24, embed_dims=32, num_rounds=3, num_heads=4, num_points=2
    )
    assert len(module.layers) == 3
    visual, text, mask = _mci_inputs()
    out = module(visual, text, mask)
    assert out['visual'].shape == (2, NUM_TOKENS, 32)  # V*, S = 64 + 16 + 4
    assert out['text'].shape == (2, 20, 32)  # L*
    assert out['spatial_shapes'] == SHAPES
    maps = split_levels(out['visual'], out['spatial_shapes'])
    assert [tuple(m.shape) for m in maps] == [(2, 32, 8, 8), (2, 32, 4, 4), (2, 32, 2, 2)]
    torch.testing.assert_close(maps[1].flatten(2).transpose(1, 2), out['visual'][:, 64:80])


def test_mci_ignores_padded_text():
    torch.manual_seed(0)
    module = MultiScaleContextIntegration(
        (16, 32, 64), 24, embed_dims=32, num_rounds=2, num_heads=4, num_points=2
    )
    module.eval()
    visual, text, mask = _mci_inputs()
    out = module(visual, text, mask)
    noisy = text.clone()
    noisy[mask == 0] = 50 * torch.randn(int((mask == 0).sum()), 24)
    out2 = module(visual, noisy, mask)
    torch.testing.assert_close(out2['visual'], out['visual'])
    real = mask.bool()
    torch.testing.assert_close(out2['text'][real], out['text'][real])


def test_mci_rejects_wrong_inputs():
    module = MultiScaleContextIntegration(
        (16, 32, 64), 24, embed_dims=32, num_rounds=1, num_heads=4
    )
    visual, text, mask = _mci_inputs()
    with pytest.raises(ValueError, match='expected 3 visual levels'):
        module(visual[:2], text, mask)
    with pytest.raises(ValueError, match='level 1 should have 32 channels, found 16'):
        module([visual[0], visual[0][:, :, :4, :4], visual[2]], text, mask)
    with pytest.raises(ValueError, match='num_rounds'):
        MultiScaleContextIntegration(num_rounds=0)


def test_fast_pytorch_path_equals_mmcv_function():
    """ms_deform_attn_pytorch (our layout) == mmcv's multi_scale_deformable_attn_pytorch."""
    torch.manual_seed(0)
    value = torch.randn(2, NUM_TOKENS, 4, 8, dtype=torch.float64, requires_grad=True)
    # Some locations fall outside [0, 1]: zero padding must match too.
    locations = (torch.rand(2, 30, 4, 3, 2, 2, dtype=torch.float64) * 1.4 - 0.2).requires_grad_()
    weights = torch.rand(2, 30, 4, 3, 2, dtype=torch.float64).softmax(-1).requires_grad_()
    ours = mci.ms_deform_attn_pytorch(value, SHAPES, locations, weights)
    theirs = mci.multi_scale_deformable_attn_pytorch(value, SHAPES, locations, weights)
    assert ours.shape == (2, 30, 32)
    torch.testing.assert_close(ours, theirs)
    grad = torch.randn_like(ours)
    ours_grads = torch.autograd.grad(ours, (value, locations, weights), grad)
    theirs_grads = torch.autograd.grad(theirs, (value, locations, weights), grad)
    for a, b in zip(ours_grads, theirs_grads):
        torch.testing.assert_close(a, b)


def test_gather_path_equals_mmcv_function():
    """ms_deform_attn_gather (embedding_bag) == mmcv's function, points far outside included."""
    torch.manual_seed(0)
    value = torch.randn(2, NUM_TOKENS, 4, 8, dtype=torch.float64, requires_grad=True)
    locations = torch.rand(2, 30, 4, 3, 2, 2, dtype=torch.float64) * 3 - 1
    # Points on the map's edges and exactly one pixel beyond them (the clamped extremes).
    locations[0, 0, 0, :, 0] = torch.tensor([0.0, 1.0], dtype=torch.float64)
    locations[0, 0, 0, :, 1] = torch.tensor([-1 / 16, 1 + 1 / 16], dtype=torch.float64)
    locations.requires_grad_()
    weights = torch.rand(2, 30, 4, 3, 2, dtype=torch.float64).softmax(-1).requires_grad_()
    ours = mci.ms_deform_attn_gather(value, SHAPES, locations, weights)
    theirs = mci.multi_scale_deformable_attn_pytorch(value, SHAPES, locations, weights)
    assert ours.shape == (2, 30, 32)
    torch.testing.assert_close(ours, theirs)
    grad = torch.randn_like(ours)
    ours_grads = torch.autograd.grad(ours, (value, locations, weights), grad)
    theirs_grads = torch.autograd.grad(theirs, (value, locations, weights), grad)
    for a, b in zip(ours_grads, theirs_grads):
        torch.testing.assert_close(a, b)


def test_gather_path_runs_without_gradients_only(monkeypatch):
    torch.manual_seed(0)
    attn = MSDeformAttn(16, num_heads=4, num_levels=3, num_points=2).eval()
    used = []
    for name in ('ms_deform_attn_gather', 'ms_deform_attn_pytorch'):
        original = getattr(mci, name)

        def spy(*args, _original=original, _name=name):
            used.append(_name)
            return _original(*args)

        monkeypatch.setattr(mci, name, spy)
    query = torch.randn(1, NUM_TOKENS, 16)
    with torch.no_grad():
        inference = attn(query, _reference_points(1), SHAPES)
    training = attn(query, _reference_points(1), SHAPES)
    assert used == ['ms_deform_attn_gather', 'ms_deform_attn_pytorch']
    torch.testing.assert_close(inference, training.detach())


@pytest.mark.parametrize('grad, atol', [(False, 0.012), (True, 0.05)])
def test_ms_deform_attn_under_bf16_autocast(grad, atol):
    """Both pure-PyTorch paths (gather without gradients, grid_sample with) run under autocast.

    The gather keeps the sampling coordinates in float32 (0.019 off with bfloat16 ones here).
    """
    torch.manual_seed(0)
    attn = MSDeformAttn(16, num_heads=4, num_levels=3, num_points=2).eval()
    for p in attn.parameters():
        torch.nn.init.normal_(p, std=0.2)
    query = torch.randn(1, NUM_TOKENS, 16)
    reference = attn(query, _reference_points(1), SHAPES).detach()
    with torch.set_grad_enabled(grad), torch.autocast('cpu', dtype=torch.bfloat16):
        out = attn(query, _reference_points(1), SHAPES)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float().detach(), reference, atol=atol, rtol=0)


def test_ms_deform_attn_pytorch_impl_switch():
    torch.manual_seed(0)
    fast = MSDeformAttn(16, num_heads=4, num_levels=3, num_points=2).eval()
    slow = MSDeformAttn(16, num_heads=4, num_levels=3, num_points=2, pytorch_impl='mmcv').eval()
    for p in fast.parameters():
        torch.nn.init.normal_(p, std=0.2)
    slow.load_state_dict(fast.state_dict())
    query = torch.randn(1, NUM_TOKENS, 16)
    torch.testing.assert_close(
        fast(query, _reference_points(1), SHAPES), slow(query, _reference_points(1), SHAPES)
    )
    with pytest.raises(ValueError, match='pytorch_impl'):
        MSDeformAttn(16, num_heads=4, pytorch_impl='cuda')
