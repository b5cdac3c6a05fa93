"""Rephrase head (D-MOLS, Eq. 12-14): shapes, the loss by hand, stop-gradient, masks."""

import pytest
import torch

from btdnet.models.decode_heads import RephraseHead

WIDTH, TEXT_DIM, S, N = 32, 24, 84, 20


# Tiny tensors: one intra-op thread is much faster than several on a shared CPU.
pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


def _head(**kwargs):
    cfg = dict(in_channels=WIDTH, channels=WIDTH, text_channels=TEXT_DIM, num_heads=4, ffn_ratio=2)
    cfg.update(kwargs)
    torch.manual_seed(0)
    return RephraseHead(**cfg)


def _inputs(batch=2, real=(7, 12)):
    mask = torch.zeros(batch, N, dtype=torch.long)
    for b, n in enumerate(real):
        mask[b, :n] = 1
    masked_mask = mask.clone()
    masked_mask[:, 2:4] = 0
    return dict(
        visual_star=torch.randn(batch, S, WIDTH),
        text_star=torch.randn(batch, N, WIDTH),
        text_mask=mask,
        masked_text=torch.randn(batch, N, TEXT_DIM),
        target=torch.randn(batch, N, TEXT_DIM),
        target_mask=mask,
    )


def test_forward_shape_and_no_segmentation_output():
    head = _head()
    assert head(_inputs()).shape == (2, N, TEXT_DIM)  # L_re at the BERT width
    assert not hasattr(head, 'conv_seg')
    assert len(head.loss_decode) == 0  # no unused mmseg loss module
    with pytest.raises(RuntimeError, match='auxiliary training head'):
        head.predict(_inputs(), [], {})


def test_loss_is_eta_times_masked_mse():
    head = _head(loss_weight=0.1)
    inputs = _inputs()
    rephrased = head(inputs)
    loss = head.loss(inputs, [], {})['loss_re']
    mask = inputs['target_mask'].bool()
    diff = (rephrased - inputs['target'])[mask]  # (real tokens, D)
    expected = 0.1 * (diff**2).sum() / (mask.sum() * TEXT_DIM)
    torch.testing.assert_close(loss, expected)
    # Padding positions of L_0 are not part of the target.
    changed = dict(inputs, target=inputs['target'].clone())
    changed['target'][~mask] = 1e4
    torch.testing.assert_close(head.loss(changed, [], {})['loss_re'], loss)


def test_target_is_stop_gradient_and_the_head_learns():
    head = _head()
    inputs = _inputs()
    target = inputs['target'].clone().requires_grad_(True)
    masked_text = inputs['masked_text'].clone().requires_grad_(True)
    visual = inputs['visual_star'].clone().requires_grad_(True)
    inputs.update(target=target, masked_text=masked_text, visual_star=visual)
    head.loss(inputs, [], {})['loss_re'].backward()
    assert target.grad is None  # sg(L_0)
    assert masked_text.grad.abs().sum() > 0  # L_m is the query
    assert visual.grad.abs().sum() > 0  # V* feeds the reconstruction
    missing = [n for n, p in head.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_padding_of_l_star_is_not_attended():
    head = _head().eval()
    inputs = _inputs()
    out = head(inputs)
    noisy = dict(inputs, text_star=inputs['text_star'].clone())
    noisy['text_star'][inputs['text_mask'] == 0] = 100.0
    torch.testing.assert_close(head(noisy), out)


def test_width_projection_and_errors():
    head = _head(in_channels=48)
    inputs = _inputs()
    inputs.update(visual_star=torch.randn(2, S, 48), text_star=torch.randn(2, N, 48))
    assert head(inputs).shape == (2, N, TEXT_DIM)
    with pytest.raises(KeyError, match='target'):
        _head().loss({k: v for k, v in _inputs().items() if k != 'target'}, [], {})
    with pytest.raises(ValueError, match='start with "loss_"'):
        _head(loss_name='re')
