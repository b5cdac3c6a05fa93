"""TwinStream head (T-BTD, Eq. 5-11) on random backbone-shaped tensors, and its loss by hand."""

import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from btdnet.models.decode_heads import FgBgCrossEntropyLoss, TwinStreamHead

IN_CHANNELS = (8, 16, 32, 64)
TEXT_DIM = 24


# Tiny tensors: one intra-op thread is much faster than several on a shared CPU.
pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


def _head(**kwargs):
    cfg = dict(
        in_channels=IN_CHANNELS,
        channels=32,
        text_channels=TEXT_DIM,
        num_rounds=2,
        num_heads=4,
        num_points=2,
        ffn_ratio=2,
        norm_cfg=dict(type='GN', num_groups=8),
    )
    cfg.update(kwargs)
    torch.manual_seed(0)
    return TwinStreamHead(**cfg)


def _inputs(batch=2, size=64, text_len=20, real=(7, 12)):
    """The backbone's output dict for a size x size input."""
    visual = [
        torch.randn(batch, c, size // 2 ** (i + 2), size // 2 ** (i + 2))
        for i, c in enumerate(IN_CHANNELS)
    ]
    mask = torch.zeros(batch, text_len, dtype=torch.long)
    for b, n in enumerate(real):
        mask[b, :n] = 1
    masked_mask = mask.clone()
    masked_mask[:, 2:4] = 0  # the key phrase
    return dict(
        visual=visual,
        text=torch.randn(batch, text_len, TEXT_DIM),
        text_mask=mask,
        masked_text=torch.randn(batch, text_len, TEXT_DIM),
        masked_mask=masked_mask,
    )


def test_forward_shapes():
    head = _head()
    out = head(_inputs())
    assert out['seg_logits'].shape == (2, 2, 16, 16)  # [O_bg, O_fg] at H/4
    assert out['visual_star'].shape == (2, 8 * 8 + 4 * 4 + 2 * 2, 32)  # V* over stages 2-4
    assert out['text_star'].shape == (2, 20, 32)  # L*
    assert out['spatial_shapes'] == [(8, 8), (4, 4), (2, 2)]
    assert not hasattr(head, 'conv_seg')


def test_loss_matches_hand_computed_2x2():
    """Eq. 10-11 on a crafted 2x2 example: softmax over (bg, fg), per-class means, 255 ignored."""
    logits = torch.tensor([[[[0.0, 1.0], [2.0, 0.0]], [[1.0, 0.0], [0.0, 3.0]]]])  # (1, 2, 2, 2)
    label = torch.tensor([[[1, 0], [255, 1]]])

    def ce(own, other):  # -log softmax of the own logit
        return math.log(1.0 + math.exp(other - own))

    l_fg = (ce(1.0, 0.0) + ce(3.0, 0.0)) / 2  # the two target pixels
    l_bg = ce(1.0, 0.0)  # the one background pixel; (1, 0) is padding
    loss = FgBgCrossEntropyLoss(fg_weight=0.6)(logits, label, ignore_index=255)
    assert loss.item() == pytest.approx(0.6 * l_fg + 0.4 * l_bg, rel=1e-6)
    fg_only = FgBgCrossEntropyLoss(fg_weight=0.6, use_bg=False)(logits, label)
    assert fg_only.item() == pytest.approx(0.6 * l_fg, rel=1e-6)
    weighted = FgBgCrossEntropyLoss(fg_weight=0.3, loss_weight=2.0)(logits, label)
    assert weighted.item() == pytest.approx(2.0 * (0.3 * l_fg + 0.7 * l_bg), rel=1e-6)


def test_loss_without_target_pixels_is_finite():
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    loss = FgBgCrossEntropyLoss()(logits, torch.zeros(1, 4, 4, dtype=torch.long))
    assert torch.isfinite(loss)
    expected = 0.4 * -F.log_softmax(logits, 1)[:, 0].mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_loss_rejects_bad_arguments():
    with pytest.raises(ValueError, match='lambda'):
        FgBgCrossEntropyLoss(fg_weight=1.5)
    with pytest.raises(ValueError, match='start with "loss_"'):
        FgBgCrossEntropyLoss(loss_name='ce')
    with pytest.raises(ValueError, match=r'\(B, 2, H, W\)'):
        FgBgCrossEntropyLoss()(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


def _sample(label):
    sample = SegDataSample()
    sample.gt_sem_seg = PixelData(data=label[None])
    return sample


def test_loss_by_feat_resizes_to_labels_and_ignores_padding():
    head = _head()
    out = head(_inputs())
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[:, 10:30, 20:40] = 1
    labels[1, 48:] = 255  # padding from the data preprocessor
    losses = head.loss_by_feat(out, [_sample(lab) for lab in labels])
    assert set(losses) == {'loss_ce', 'acc_seg'}
    up = F.interpolate(out['seg_logits'], size=(64, 64), mode='bilinear', align_corners=False)
    expected = FgBgCrossEntropyLoss()(up, labels, ignore_index=255)
    torch.testing.assert_close(losses['loss_ce'], expected)


def test_predict_by_feat_resizes_to_the_input():
    head = _head().eval()
    logits = head.predict(_inputs(), [dict(img_shape=(64, 64))] * 2, dict())
    assert logits.shape == (2, 2, 64, 64)


def test_masked_pooling_bins():
    head = _head(bg_pool_sizes=(1, 4))
    text = torch.randn(1, 10, 32)
    full = torch.ones(1, 10, dtype=torch.long)
    # With every token kept and the sentence filling all N tokens it is adaptive average pooling.
    pooled = head.pool_masked_text(text, full, torch.tensor([10]))
    expected = torch.cat(
        [F.adaptive_avg_pool1d(text.transpose(1, 2), r).transpose(1, 2) for r in (1, 4)], 1
    )
    torch.testing.assert_close(pooled, expected)
    # A 5-token sentence: bins over its own tokens, masked tokens (2, 3) and padding left out.
    mask = torch.tensor([[1, 1, 0, 0, 1, 0, 0, 0, 0, 0]])
    pooled = head.pool_masked_text(text, mask, torch.tensor([5]))
    t = text[0]
    torch.testing.assert_close(pooled[0, 0], (t[0] + t[1] + t[4]) / 3)  # r = 1
    torch.testing.assert_close(pooled[0, 1], (t[0] + t[1]) / 2)  # tokens 0-1
    torch.testing.assert_close(pooled[0, 2], t[1])  # tokens 1-2, 2 masked
    torch.testing.assert_close(pooled[0, 3], torch.zeros(32))  # tokens 2-3, both masked
    torch.testing.assert_close(pooled[0, 4], t[4])  # tokens 3-4


@pytest.mark.parametrize('sizes, num_tokens', [((1, 2), 3), ((1, 4), 5), ((1, 2, 4), 7)])
def test_number_of_background_tokens(sizes, num_tokens):
    head = _head(bg_pool_sizes=sizes)
    assert head.num_bg_tokens == num_tokens
    assert head.bg_delta.shape == (num_tokens, 32)
    assert head.background_tokens(_inputs()).shape == (2, num_tokens, 32)


def test_prior_knowledge_switch():
    with_prior = _head().eval()
    without = _head(use_prior_knowledge=False).eval()
    names = {n for n, _ in with_prior.named_parameters()}
    names_wo = {n for n, _ in without.named_parameters()}
    assert names - names_wo == {'masked_text_proj.weight', 'masked_text_proj.bias'}
    assert names_wo <= names
    inputs = _inputs()
    other = dict(inputs, masked_text=torch.randn_like(inputs['masked_text']))
    with torch.no_grad():
        # L_m moves the logits only when it is used as prior knowledge.
        assert not torch.allclose(with_prior(inputs)['seg_logits'], with_prior(other)['seg_logits'])
        torch.testing.assert_close(without(inputs)['seg_logits'], without(other)['seg_logits'])
        # The background tokens are then exactly Delta.
        torch.testing.assert_close(
            without.background_tokens(inputs), without.bg_delta[None].expand(2, -1, -1)
        )


def test_eval_forward_turns_dropout_off_and_ignores_padding():
    head = _head(attn_dropout=0.2)
    inputs = _inputs()
    logits = {}
    with torch.no_grad():
        for mode in ('train', 'eval'):
            getattr(head, mode)()
            for seed in (0, 1):
                torch.manual_seed(seed)
                logits[mode, seed] = head(inputs)['seg_logits']
    assert not torch.allclose(logits['train', 0], logits['train', 1])  # dropout on: can differ
    first = logits['eval', 0]
    torch.testing.assert_close(logits['eval', 1], first, rtol=0, atol=0)
    with torch.no_grad():
        noisy = dict(inputs, text=inputs['text'].clone())
        noisy['text'][inputs['text_mask'] == 0] = 100.0
        torch.testing.assert_close(head(noisy)['seg_logits'], first)


def test_gradients_reach_every_parameter():
    head = _head()
    out = head(_inputs())
    labels = torch.randint(0, 2, (2, 64, 64))
    losses = head.loss_by_feat(out, [_sample(lab) for lab in labels])
    losses['loss_ce'].backward()
    missing = [n for n, p in head.named_parameters() if p.grad is None or not p.grad.any()]
    # V* of stages 3-4 of the last round feeds only the rephrase head, but its weights are shared
    # with stage 2's tokens, so every parameter still learns from L_ce.
    assert missing == []


def test_clear_errors():
    head = _head()
    with pytest.raises(KeyError, match='masked_text'):
        inputs = _inputs()
        inputs.pop('masked_text')
        head(inputs)
    with pytest.raises(TypeError, match='backbone output dict'):
        head(_inputs()['visual'])
    with pytest.raises(ValueError, match='text_channels=24'):
        head(dict(_inputs(), text=torch.randn(2, 20, 7)))
    with pytest.raises(ValueError, match='4 stages'):
        _head(in_channels=(8, 16, 32))


def test_folded_matching_equals_eq9_per_pixel():
    """Applying I_proj's last conv to the prototypes gives Eq. 9's per-pixel inner products."""
    head = _head().eval()
    v_pred = torch.randn(2, 32, 16, 16)
    prototypes = torch.randn(2, 2, 32)
    pixels = head.image_proj(v_pred)  # I_proj(V_pred) computed in full
    expected = torch.einsum('bchw,bkc->bkhw', pixels, prototypes) / 32**0.5
    torch.testing.assert_close(head.match(v_pred, prototypes), expected)
