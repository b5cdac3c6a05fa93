"""Generalized referring in the model: empty targets in training, the no-target head, and the
no-target decision of every prediction (the head's, or the mask's without one)."""

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import btdnet  # noqa: F401  (registers the plugin)
from btdnet.models.decode_heads import FgBgCrossEntropyLoss, NoTargetHead

TINY = Path(__file__).resolve().parents[2] / 'configs' / 'btdnet' / 'btdnet_tiny_synthetic.py'
init_default_scope('mmseg')
pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


def _model(no_target_head=True, refiner=False, seed=0):
    cfg = copy.deepcopy(Config.fromfile(str(TINY)).model)
    if no_target_head:
        cfg.no_target_head = dict(type='NoTargetHead', in_channels=32, channels=16)
    if refiner:
        cfg.refiner = dict(type='ImageGuidedRefiner', channels=8, coarse_loss_weight=0.5)
    torch.manual_seed(seed)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def _sample(text, no_target, size=64, seed=0):
    meta = dict(
        text=text,
        key_spans=[[4, len(text)]],
        ori_shape=(size, size),
        img_shape=(size, size),
        sample_id=f's{seed}',
        img_path=f'synthetic/{seed}.png',
        no_target=no_target,
        num_targets=0 if no_target else 1,
    )
    sample = SegDataSample(metainfo=meta)
    label = torch.zeros(1, size, size, dtype=torch.long)
    if not no_target:
        label[:, 8:30, 20:40] = 1
    sample.gt_sem_seg = PixelData(data=label)
    return sample


def _batch(flags, size=64):
    gen = torch.Generator().manual_seed(3)
    texts = ['the red ship at the top', 'the white storage tanks', 'the green airplane']
    return dict(
        inputs=[
            torch.randint(0, 256, (3, size, size), generator=gen, dtype=torch.uint8) for _ in flags
        ],
        data_samples=[_sample(texts[i % 3], flag, size, seed=i) for i, flag in enumerate(flags)],
    )


def test_fg_bg_loss_without_target_pixels_is_the_background_term_alone():
    logits = torch.randn(2, 2, 5, 7, generator=torch.Generator().manual_seed(0))
    label = torch.zeros(2, 5, 7, dtype=torch.long)
    label[1, 0, 0] = 255  # padding counts in neither term
    loss = FgBgCrossEntropyLoss(fg_weight=0.6)(logits, label)
    # By hand: L_fg has no pixel (0); L_bg = mean over the 69 real pixels of -log p_bg.
    p_bg = logits.exp()[:, 0] / logits.exp().sum(1)
    keep = label != 255
    expected = 0.4 * -(p_bg.log()[keep]).sum() / keep.sum()
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize('refiner', [False, True], ids=['head', 'refiner'])
def test_a_batch_without_any_target_trains_without_nan(refiner):
    model = _model(refiner=refiner)
    model.train()
    data = model.data_preprocessor(_batch([True, True]), True)
    losses = model(**data, mode='loss')
    expected = {'decode.loss_ce', 'decode.acc_seg', 'aux.loss_re'}
    expected |= {'no_target.loss_nt', 'no_target.acc_nt'}
    expected |= {'coarse.loss_ce', 'coarse.acc_seg'} if refiner else set()
    assert set(losses) == expected
    assert all(torch.isfinite(v).all() for v in losses.values()), losses
    assert losses['aux.loss_re'] > 0  # the sentence is still rephrased without a target
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_no_target_loss_reaches_the_head_and_every_parameter():
    model = _model()
    model.eval()  # no dropout: the hand computation below sees the same network
    data = model.data_preprocessor(_batch([False, True, False]), True)
    losses = model(**data, mode='loss')
    feats = model.extract_feat(data['inputs'], data['data_samples'])
    logits = model.no_target_head(model.decode_head(feats))
    expected = 0.05 * F.cross_entropy(logits, torch.tensor([0, 1, 0]))  # the default weight
    torch.testing.assert_close(losses['no_target.loss_nt'], expected)
    model.zero_grad()
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    missing = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.any())
    ]
    assert missing == []


def test_the_no_target_class_weight_and_the_head_arguments():
    head = NoTargetHead(
        in_channels=4, channels=3, loss_weight=1.0, no_target_weight=3.0, mask_evidence=False
    )
    outputs = dict(
        text_star=torch.randn(2, 5, 4),
        visual_star=torch.randn(2, 6 + 3, 4),
        spatial_shapes=torch.tensor([[2, 3], [1, 3]]),
    )
    logits = head(outputs)
    assert logits.shape == (2, 2)
    samples = [SegDataSample(metainfo=dict(no_target=True)), SegDataSample()]
    log_p = logits.log_softmax(-1)
    expected = (3.0 * -log_p[0, 1] + -log_p[1, 0]) / (3.0 + 1.0)  # weighted mean, by hand
    torch.testing.assert_close(head.loss(outputs, samples)['loss_nt'], expected)
    # V* is pooled over the stage-2 tokens only: later levels do not move the decision.
    changed = dict(outputs, visual_star=outputs['visual_star'].clone())
    changed['visual_star'][:, 6:] += 100
    torch.testing.assert_close(head(changed), logits)
    with pytest.raises(ValueError, match='in_channels=8'):
        NoTargetHead(in_channels=8)(outputs)
    with pytest.raises(ValueError, match='threshold'):
        NoTargetHead(threshold=1.0)


def test_mask_evidence_reads_the_best_match_and_the_margin():
    torch.manual_seed(0)
    head = NoTargetHead(in_channels=4, channels=3)
    margin = torch.full((1, 3, 5), -50.0)
    margin[0, 1, 2] = 50.0  # the Fg-Bg predictor's one match
    outputs = dict(
        text_star=torch.randn(1, 5, 4),
        visual_star=torch.randn(1, 6, 4),
        spatial_shapes=torch.tensor([[2, 3]]),
        seg_logits=torch.stack((torch.zeros_like(margin), margin), 1),
        pixel_features=torch.randn(1, 4, 3, 5),
    )
    seen = []
    head.margin_stats.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    logits = head(outputs)
    # By hand: max margin 50; log-mean-exp = log((e^50 + 14 e^-50) / 15) = 50 - log 15.
    torch.testing.assert_close(seen[0], torch.tensor([[50.0, 50.0 - math.log(15)]]))
    elsewhere = dict(outputs, pixel_features=outputs['pixel_features'].clone())
    elsewhere['pixel_features'][0, :, 0, 0] += 10  # a pixel the match does not cover
    torch.testing.assert_close(head(elsewhere), logits)
    at_match = dict(outputs, pixel_features=outputs['pixel_features'].clone())
    at_match['pixel_features'][0, :, 1, 2] += 10
    assert not torch.allclose(head(at_match), logits)
    # Everything is read without gradient: the decision does not reshape the model.
    for key in ('text_star', 'visual_star', 'seg_logits', 'pixel_features'):
        outputs[key].requires_grad_(True)
    head.loss(outputs, [SegDataSample(metainfo=dict(no_target=True))])['loss_nt'].backward()
    assert all(outputs[k].grad is None for k in ('text_star', 'visual_star', 'seg_logits'))
    assert outputs['pixel_features'].grad is None
    assert all(p.grad is not None and p.grad.any() for p in head.parameters())


def _force(head, no_target: bool):
    """Make the head say one thing whatever it sees."""
    last = head.classifier[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, 5.0] if no_target else [5.0, 0.0]))


def test_predict_empties_the_mask_when_the_head_says_no_target():
    model = _model()
    model.eval()
    data = model.data_preprocessor(_batch([False, False]), False)
    _force(model.no_target_head, no_target=False)
    with torch.no_grad():
        kept = model(**data, mode='predict')
    assert [r.metainfo['pred_no_target'] for r in kept] == [False, False]
    assert kept[0].metainfo['no_target_prob'] == pytest.approx(torch.sigmoid(torch.tensor(-5.0)))
    _force(model.no_target_head, no_target=True)
    with torch.no_grad():
        emptied = model(**data, mode='predict')
    for before, after in zip(kept, emptied, strict=True):
        assert after.metainfo['pred_no_target'] is True
        assert after.metainfo['no_target_prob'] == pytest.approx(torch.sigmoid(torch.tensor(5.0)))
        assert not after.pred_sem_seg.data.any()
        torch.testing.assert_close(after.seg_logits.data, before.seg_logits.data)


def test_without_a_head_the_mask_decides_and_the_probability_follows_the_margin():
    model = _model(no_target_head=False)
    model.eval()
    data = model.data_preprocessor(_batch([False, False]), False)
    with torch.no_grad():
        results = model(**data, mode='predict')
    for result in results:
        logits = result.seg_logits.data
        margin = float((logits[1] - logits[0]).max())
        assert result.metainfo['no_target_prob'] == pytest.approx(1 / (1 + torch.e**margin))
        assert result.metainfo['pred_no_target'] == (not result.pred_sem_seg.data.any())
    # A background bias on the match makes every pixel background: no target, by the mask.
    model.decode_head.match = lambda v, p: torch.stack(
        (torch.ones_like(v[:, 0]), torch.zeros_like(v[:, 0])), 1
    )
    with torch.no_grad():
        (result, _) = model(**data, mode='predict')
    assert result.metainfo['pred_no_target'] is True
    assert result.metainfo['no_target_prob'] == pytest.approx(1 / (1 + torch.e**-1))


def test_slide_inference_says_target_when_any_window_has_one():
    model = _model()
    model.eval()
    model.test_cfg = Config(dict(mode='slide', crop_size=(64, 64), stride=(48, 48)))
    data = model.data_preprocessor(_batch([False], size=112), False)
    calls = []
    real = model.no_target_head.forward

    def one_window_with_a_target(outputs):
        logits = real(outputs)
        calls.append(len(calls))
        bias = torch.tensor([0.0, 4.0]) if len(calls) != 3 else torch.tensor([4.0, 0.0])
        return logits * 0 + bias

    model.no_target_head.forward = one_window_with_a_target
    with torch.no_grad():
        (result,) = model(**data, mode='predict')
    assert len(calls) == 4  # 2 x 2 windows over 112 x 112
    assert result.metainfo['pred_no_target'] is False
    assert result.metainfo['no_target_prob'] == pytest.approx(torch.sigmoid(torch.tensor(-4.0)))


def test_the_generalized_paper_config_takes_a_training_step(tmp_path, synthetic):
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import DATASETS
    from tiny_models import shrink_paper_model

    synthetic.generate(
        str(tmp_path), num_images=6, size=64, formats=('grefs',), task='generalized', eval_images=1
    )
    cfg = Config.fromfile(str(TINY.parents[1] / 'btdnet_swinb_grefs.py'))
    assert cfg.model.no_target_head.type == 'NoTargetHead'
    model = MODELS.build(shrink_paper_model(cfg.model, Config.fromfile(str(TINY)).model))
    model.init_weights()
    pipeline = copy.deepcopy(cfg.train_dataloader.dataset.pipeline)
    next(t for t in pipeline if t.type == 'Resize').scale = (64, 64)
    dataset = DATASETS.build(
        dict(
            cfg.train_dataloader.dataset,
            data_root=str(tmp_path),
            ann_file='grefs/grefs(unc).json',
            instances_file='grefs/instances.json',
            data_prefix=dict(img_path='images/grefs'),
            pipeline=pipeline,
        )
    )
    flags = [dataset.get_data_info(i)['no_target'] for i in range(len(dataset))]
    batch = pseudo_collate([dataset[flags.index(True)], dataset[flags.index(False)]])
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    before = copy.deepcopy(model.no_target_head.state_dict())
    model.train()
    losses = model.train_step(batch, optim_wrapper)
    assert {'no_target.loss_nt', 'decode.loss_ce', 'aux.loss_re'} <= set(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())
    after = model.no_target_head.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the head learnt
