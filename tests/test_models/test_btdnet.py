"""BTDNet end to end on the tiny config: loss / predict / tensor through the data preprocessor,
gradients, slide inference with the sentence, the full-resolution refiner, ablation switches,
every config builds."""

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import DATASETS, MODELS
from mmseg.structures import SegDataSample
from tiny_models import shrink_paper_model

import btdnet  # noqa: F401  (registers the plugin)
from btdnet.models.layers import ImageGuidedRefiner

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / 'configs'
TINY = CONFIGS / 'btdnet' / 'btdnet_tiny_synthetic.py'
PAPER = [CONFIGS / f'btdnet_swinb_{name}.py' for name in ('rrsisd', 'refsegrs', 'grefs')]
ABLATIONS = sorted(p for p in (CONFIGS / 'btdnet').glob('btdnet_swinb_*.py'))
ALL_MODEL_CONFIGS = sorted(p for p in CONFIGS.rglob('*.py') if '_base_' not in p.parts)

init_default_scope('mmseg')


# Tiny tensors: one intra-op thread is much faster than several on a shared CPU.
pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


def _build(model_cfg, seed=0, init=False):
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(model_cfg))
    if init:
        model.init_weights()
    return model


@pytest.fixture(scope='module')
def tiny_cfg():
    return Config.fromfile(str(TINY))


@pytest.fixture(scope='module')
def model(tiny_cfg):
    return _build(tiny_cfg.model, init=True)


def _sample(text, spans, ori_shape, size=64, seed=0):
    sample = SegDataSample(
        metainfo=dict(
            text=text,
            key_spans=spans,
            ori_shape=ori_shape,
            img_shape=(size, size),
            sample_id=f'{text[:8]}-{seed}',
            img_path=f'synthetic/{seed}.png',
        )
    )
    gen = torch.Generator().manual_seed(seed)
    label = torch.zeros(1, size, size, dtype=torch.long)
    y, x = torch.randint(0, size // 2, (2,), generator=gen).tolist()
    label[:, y : y + size // 3, x : x + size // 3] = 1
    sample.gt_sem_seg = PixelData(data=label)
    return sample


def _hand_batch(ori_shapes=((96, 96), (80, 120)), size=64):
    texts = [('the white storage tank at the bottom left', [[4, 22]]), ('a small ship', [[2, 12]])]
    gen = torch.Generator().manual_seed(1)
    return dict(
        inputs=[
            torch.randint(0, 256, (3, size, size), generator=gen, dtype=torch.uint8)
            for _ in ori_shapes
        ],
        data_samples=[
            _sample(*texts[i % 2], shape, size, seed=i) for i, shape in enumerate(ori_shapes)
        ],
    )


def _total(losses):
    return sum(v for k, v in losses.items() if 'loss' in k)


# ---------------------------------------------------------------- through the real data pipeline
@pytest.fixture(scope='module')
def pipeline_batches(tiny_cfg, synthetic_rrsis_root):
    train = DATASETS.build(
        dict(tiny_cfg.train_dataloader.dataset, data_root=str(synthetic_rrsis_root))
    )
    val = DATASETS.build(dict(tiny_cfg.val_dataloader.dataset, data_root=str(synthetic_rrsis_root)))
    return pseudo_collate([train[0], train[1]]), pseudo_collate([val[0]])


def test_loss_step_through_pipeline_reaches_every_parameter(model, pipeline_batches):
    model.train()
    model.zero_grad()
    data = model.data_preprocessor(pipeline_batches[0], True)
    assert data['inputs'].shape == (2, 3, 64, 64)
    losses = model(**data, mode='loss')
    assert set(losses) == {'decode.loss_ce', 'decode.acc_seg', 'aux.loss_re'}
    assert all(torch.isfinite(v).all() for v in losses.values())
    _total(losses).backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in params if p.grad is None or not p.grad.any()]
    assert missing == []
    prefixes = {n.split('.')[0] + '.' + n.split('.')[1] for n, _ in params}
    assert {'backbone.vision', 'backbone.text_encoder', 'backbone.bsc'} <= prefixes


def test_predict_and_tensor_through_pipeline(model, pipeline_batches):
    model.eval()
    data = model.data_preprocessor(pipeline_batches[1], False)
    with torch.no_grad():
        (result,) = model(**data, mode='predict')
        logits = model(**data, mode='tensor')
    ori = tuple(result.metainfo['ori_shape'])
    assert result.pred_sem_seg.data.shape == (1, *ori)
    assert result.seg_logits.data.shape == (2, *ori)
    assert logits.shape == (1, 2, 16, 16)  # [O_bg, O_fg] at H/4


# ---------------------------------------------------------------- hand-built samples
def test_predict_masks_at_each_original_size(model):
    model.eval()
    data = model.data_preprocessor(_hand_batch(((96, 96), (80, 120), (50, 40))), False)
    with torch.no_grad():
        results = model(**data, mode='predict')
    for result, shape in zip(results, [(96, 96), (80, 120), (50, 40)]):
        pred, logits = result.pred_sem_seg.data, result.seg_logits.data
        assert pred.shape == (1, *shape) and pred.dtype == torch.long
        assert set(pred.unique().tolist()) <= {0, 1}
        torch.testing.assert_close(pred[0], (logits[1] > logits[0]).long())  # fg beats bg


def test_eval_outputs_do_not_depend_on_the_random_state(model, tiny_cfg):
    """Eval mode turns every dropout off (the tiny BERT's are 0.1): predictions under different
    seeds, and those of an independently built model with the same weights, are the same bits.
    In train mode the same seeds give different logits, so the comparison can fail."""
    data = model.data_preprocessor(_hand_batch(), False)
    model.train()
    logits = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        with torch.no_grad():
            logits.append(model(**data, mode='tensor'))
    assert not torch.allclose(*logits)

    other = _build(tiny_cfg.model, seed=1)
    other.load_state_dict(model.state_dict())
    results = []
    for seed, net in ((0, model), (1, model), (2, other)):
        net.eval()
        torch.manual_seed(seed)
        with torch.no_grad():
            results.append([r.seg_logits.data for r in net(**data, mode='predict')])
    for outputs in results[1:]:
        for a, b in zip(results[0], outputs):
            torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_the_sentence_changes_the_prediction(model):
    model.eval()
    batch = _hand_batch(((64, 64),))
    other = copy.deepcopy(batch)
    other['data_samples'][0].set_metainfo(
        dict(text='green trees along the road', key_spans=[[6, 11]])
    )
    with torch.no_grad():
        a = model(**model.data_preprocessor(batch, False), mode='tensor')
        b = model(**model.data_preprocessor(other, False), mode='tensor')
    assert not torch.allclose(a, b)


def test_slide_inference_tokenises_once_and_passes_the_text_to_every_crop(tiny_cfg, monkeypatch):
    cfg = copy.deepcopy(tiny_cfg.model)
    cfg.test_cfg = dict(mode='slide', crop_size=(48, 48), stride=(16, 16))
    slide = _build(cfg).eval()
    text_encoder = slide.backbone.text_encoder
    calls, tokenised, encoded = [], [], []
    forward, tokenize, encode = slide.backbone.forward, text_encoder.tokenize, text_encoder.forward

    def spy(inputs, **text):
        calls.append((tuple(inputs.shape[2:]), text))
        return forward(inputs, **text)

    def spy_tokenize(texts, *args, **kwargs):
        tokenised.append(list(texts))
        return tokenize(texts, *args, **kwargs)

    def spy_encode(input_ids, attention_mask):
        encoded.append(input_ids)
        return encode(input_ids, attention_mask)

    monkeypatch.setattr(slide.backbone, 'forward', spy)
    monkeypatch.setattr(text_encoder, 'tokenize', spy_tokenize)
    monkeypatch.setattr(text_encoder, 'forward', spy_encode)
    batch = _hand_batch(((96, 96), (80, 120)))
    texts = [s.metainfo['text'] for s in batch['data_samples']]
    with torch.no_grad():
        results = slide(**slide.data_preprocessor(batch, False), mode='predict')
    assert tokenised == [texts]  # once per batch, not once per crop
    assert len(encoded) == 1  # L_m (E_m through BERT) once for all crops
    assert len(calls) == 4  # 2 x 2 crops of 48 with stride 16 over 64 x 64
    ids = text_encoder.tokenize(texts, [[[4, 22]], [[2, 12]]])
    for shape, text in calls:
        assert shape == (48, 48) and set(text) == {
            'input_ids',
            'attention_mask',
            'masked_text',
            'masked_attention_mask',
        }
        assert torch.equal(text['input_ids'], ids['input_ids'])
        assert torch.equal(text['masked_attention_mask'], ids['masked_attention_mask'])
    for result, shape in zip(results, [(96, 96), (80, 120)]):
        assert result.pred_sem_seg.data.shape == (1, *shape)
        assert result.seg_logits.data.shape == (2, *shape)
        assert torch.isfinite(result.seg_logits.data).all()


def test_predict_needs_the_sentences(model):
    model.eval()
    with pytest.raises(ValueError, match='sentence'):
        model.predict(torch.zeros(1, 3, 64, 64))


def test_l0_is_computed_without_gradient_in_eval_mode(model, monkeypatch):
    """L_0 (the rephrase target) is the plain BERT output under no_grad, dropout off."""
    model.train()
    seen = []
    text_encoder = model.backbone.text_encoder
    forward = text_encoder.forward

    def spy(input_ids, attention_mask):
        seen.append((torch.is_grad_enabled(), text_encoder.training))
        return forward(input_ids, attention_mask)

    monkeypatch.setattr(text_encoder, 'forward', spy)
    model(**model.data_preprocessor(_hand_batch(), True), mode='loss')
    # L_m runs through the backbone's staged BERT pass (batched with E), not through forward:
    # the one forward call is L_0's.
    assert seen == [(False, False)]
    assert text_encoder.training


# ---------------------------------------------------------------- configs
def _randomise_correction(refiner, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in refiner.correction.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def _refined_model(coarse_loss_weight=0.5, seed=0):
    cfg = copy.deepcopy(Config.fromfile(str(TINY)).model)
    cfg.refiner = dict(type='ImageGuidedRefiner', channels=8, coarse_loss_weight=coarse_loss_weight)
    torch.manual_seed(seed)
    model = MODELS.build(cfg)
    model.init_weights()
    _randomise_correction(model.refiner, seed)
    return model


# ---------------------------------------------------------------- the full-resolution refiner
def test_untrained_refiner_is_bilinear_upsampling():
    refiner = ImageGuidedRefiner(channels=8, init_cfg=dict(type='Normal', layer='Conv2d', std=1.0))
    refiner.init_weights()  # an init_cfg must not undo the zero start
    image = torch.randn(2, 3, 32, 40)
    logits = torch.randn(2, 2, 8, 10)
    expected = F.interpolate(logits, size=(32, 40), mode='bilinear', align_corners=False)
    torch.testing.assert_close(refiner(image, logits), expected, atol=0, rtol=0)
    # At the image's size already: returned as they are.
    torch.testing.assert_close(refiner(image, expected), expected, atol=0, rtol=0)


def test_refiner_learns_to_follow_an_edge_bilinear_upsampling_blurs():
    """A square whose H/4 logits are blurred by the stride: a few hundred steps on the image's
    edge give a sharper mask than upsampling (which the untrained refiner returns)."""
    torch.manual_seed(0)
    size, gen = 32, torch.Generator().manual_seed(0)
    images, labels = [], []
    for _ in range(16):
        y, x = torch.randint(3, 17, (2,), generator=gen).tolist()
        h, w = torch.randint(5, 12, (2,), generator=gen).tolist()
        label = torch.zeros(size, size, dtype=torch.long)
        label[y : y + h, x : x + w] = 1
        image = torch.randn(3, size, size, generator=gen) * 0.1
        image[:, label.bool()] += 1.0
        images.append(image)
        labels.append(label)
    images, labels = torch.stack(images), torch.stack(labels)
    fg = F.avg_pool2d(labels[:, None].float(), 4)  # what a stride-4 head can say
    coarse = torch.cat([-(fg - 0.5) * 8, (fg - 0.5) * 8], 1)

    def iou(logits):
        pred = logits.argmax(1)
        return ((pred == 1) & (labels == 1)).sum() / ((pred == 1) | (labels == 1)).sum()

    refiner = ImageGuidedRefiner(channels=8)
    before = iou(refiner(images, coarse).detach())
    optim = torch.optim.Adam(refiner.parameters(), lr=1e-2)
    for _ in range(300):
        optim.zero_grad()
        F.cross_entropy(refiner(images, coarse), labels).backward()
        optim.step()
    after = iou(refiner(images, coarse).detach())
    assert before < 0.9 and after > 0.97, (before, after)


def test_refiner_checks_its_inputs():
    refiner = ImageGuidedRefiner()
    with pytest.raises(ValueError, match=r'image must be \(B, 3, H, W\)'):
        refiner(torch.zeros(1, 4, 8, 8), torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match=r'logits must be \(1, 2, h, w\)'):
        refiner(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match='coarse_loss_weight must be >= 0'):
        ImageGuidedRefiner(coarse_loss_weight=-1)
    with pytest.raises(ValueError, match='one positive dilation'):
        ImageGuidedRefiner(dilations=())


def test_loss_adds_the_weighted_coarse_loss_and_reaches_every_parameter():
    model = _refined_model(coarse_loss_weight=0.25)
    model.eval()  # no dropout: the hand computation below sees the same network
    data = model.data_preprocessor(_hand_batch(((64, 64), (64, 64))), True)
    losses = model(**data, mode='loss')
    assert set(losses) == {
        'decode.loss_ce',
        'decode.acc_seg',
        'coarse.loss_ce',
        'coarse.acc_seg',
        'aux.loss_re',
    }
    # The same forward by hand: the head's logits, refined, each through the head's loss.
    feats = model.extract_feat(data['inputs'], data['data_samples'])
    outputs = model.decode_head(feats)
    head = model.decode_head
    coarse = head.loss_by_feat(outputs['seg_logits'], data['data_samples'])['loss_ce']
    refined = model.refiner(data['inputs'], outputs['seg_logits'])
    assert refined.shape == (2, 2, 64, 64)
    fine = head.loss_by_feat(refined, data['data_samples'])['loss_ce']
    torch.testing.assert_close(losses['coarse.loss_ce'], 0.25 * coarse)
    torch.testing.assert_close(losses['decode.loss_ce'], fine)
    assert not torch.allclose(fine, coarse)  # the refiner changed the logits

    model.zero_grad()
    _total(losses).backward()
    missing = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.any())
    ]
    assert missing == []


def test_without_coarse_weight_only_the_refined_loss_is_returned():
    model = _refined_model(coarse_loss_weight=0.0)
    model.train()
    data = model.data_preprocessor(_hand_batch(((64, 64), (64, 64))), True)
    assert set(model(**data, mode='loss')) == {'decode.loss_ce', 'decode.acc_seg', 'aux.loss_re'}


def test_predict_and_tensor_modes_use_the_refined_logits():
    model = _refined_model().eval()
    data = model.data_preprocessor(_hand_batch(((64, 64), (96, 80))), False)
    inputs, samples = data['inputs'], data['data_samples']
    with torch.no_grad():
        logits = model(**data, mode='tensor')
        results = model(**data, mode='predict')
        text = model.tokenize(samples, device=inputs.device)
        head = model.decode_head.forward(model.backbone(inputs, **text), need_visual_star=False)
    assert logits.shape == (2, 2, 64, 64)  # full resolution, not H/4
    torch.testing.assert_close(logits, model.refiner(inputs, head['seg_logits']))
    # predict: the refined logits resized to each original size, then fg > bg.
    second = F.interpolate(logits[1:], size=(96, 80), mode='bilinear', align_corners=False)[0]
    torch.testing.assert_close(results[1].seg_logits.data, second, atol=1e-5, rtol=0)
    plain = copy.deepcopy(model)
    plain.refiner = None
    with torch.no_grad():
        unrefined = plain(**data, mode='predict')
    assert not torch.allclose(unrefined[1].seg_logits.data, second, atol=1e-3)


@pytest.fixture(scope='module')
def reference(tiny_cfg):
    """The paper model (RefSegRS config, which the ablations start from), shrunk."""
    paper = Config.fromfile(str(CONFIGS / 'btdnet_swinb_refsegrs.py'))
    model = _build(shrink_paper_model(paper.model, tiny_cfg.model))
    return model, {n: tuple(p.shape) for n, p in model.named_parameters()}


def _names_under(names, *prefixes):
    return {n for n in names if n.startswith(prefixes)}


ABLATION_EXPECTATIONS = {
    # config stem: (check of the parameter names removed, check of the model)
    'btdnet_swinb_bsc-s1_refsegrs': ('bsc', (1, 2, 3)),
    'btdnet_swinb_bsc-s12_refsegrs': ('bsc', (2, 3)),
    'btdnet_swinb_bsc-s123_refsegrs': ('bsc', (3,)),
    'btdnet_swinb_bsc-s1234_refsegrs': ('same', None),
    'btdnet_swinb_only-v2l_refsegrs': ('one_way', None),
    'btdnet_swinb_bg3_refsegrs': ('bg', 3),
    'btdnet_swinb_bg5_refsegrs': ('bg', 5),
    'btdnet_swinb_bg7_refsegrs': ('bg', 7),
    'btdnet_swinb_no-prior_refsegrs': ('no_prior', None),
    'btdnet_swinb_wo-lbg_refsegrs': ('wo_lbg', None),
    'btdnet_swinb_wo-lre_refsegrs': ('wo_lre', None),
    'btdnet_swinb_mci768_refsegrs': ('width', 3),
}


def test_every_ablation_config_is_checked():
    assert {p.stem for p in ABLATIONS} == set(ABLATION_EXPECTATIONS)


@pytest.mark.parametrize('path', ABLATIONS, ids=lambda p: p.stem)
def test_ablation_drops_exactly_what_it_names(path, tiny_cfg, reference):
    ref_model, ref_shapes = reference
    cfg = Config.fromfile(str(path))
    model = _build(shrink_paper_model(cfg.model, tiny_cfg.model))
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    removed, added = set(ref_shapes) - set(shapes), set(shapes) - set(ref_shapes)
    kind, arg = ABLATION_EXPECTATIONS[path.stem]
    if kind == 'bsc':
        assert removed == _names_under(ref_shapes, *[f'backbone.bsc.{i}.' for i in arg])
        assert removed and not added
    elif kind == 'one_way':
        assert model.backbone.one_way and not added
        assert removed and removed <= _names_under(ref_shapes, 'backbone.bsc.')  # the V->L side
    elif kind == 'no_prior':
        assert removed == {
            'decode_head.masked_text_proj.weight',
            'decode_head.masked_text_proj.bias',
        }
        assert not added and not model.decode_head.use_prior_knowledge
    elif kind == 'wo_lre':
        assert removed == _names_under(ref_shapes, 'rephrase_head.') and removed and not added
        assert not model.with_rephrase_head
    else:
        assert not removed and not added
        changed = {n for n in shapes if shapes[n] != ref_shapes[n]}
        if kind == 'bg':
            assert model.decode_head.num_bg_tokens == arg
            assert changed == ({'decode_head.bg_delta'} if arg != 5 else set())
        elif kind == 'width':
            assert model.decode_head.channels == arg * ref_model.decode_head.channels
            assert changed == _names_under(changed, 'decode_head.', 'rephrase_head.') != set()
        elif kind == 'wo_lbg':
            assert not model.decode_head.loss_decode.use_bg and not changed
        else:
            assert not changed

    # One loss step: the variant still trains every parameter it has.
    model.train()
    data = model.data_preprocessor(_hand_batch(((64, 64), (64, 64))), True)
    losses = model(**data, mode='loss')
    assert ('aux.loss_re' in losses) == (kind != 'wo_lre')
    _total(losses).backward()
    missing = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.any())
    ]
    assert missing == []


def _needs_local_weights(path):
    text_encoder = Config.fromfile(str(path)).model.backbone.text_encoder
    return str(text_encoder.get('pretrained') or '').startswith('pretrain/')


SELF_CONTAINED = [p for p in ALL_MODEL_CONFIGS if p not in {*PAPER, *ABLATIONS}]


def test_every_config_is_covered():
    """Paper configs name their missing weights, ablations are built shrunk, the rest as is."""
    assert TINY in SELF_CONTAINED
    assert {p for p in ALL_MODEL_CONFIGS if _needs_local_weights(p)} == {*PAPER, *ABLATIONS}


@pytest.mark.parametrize('path', SELF_CONTAINED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_self_contained_config_builds(path):
    model = MODELS.build(Config.fromfile(str(path)).model)
    assert type(model).__name__ == 'BTDNet'


@pytest.mark.parametrize('path', PAPER, ids=lambda p: p.stem)
def test_paper_config_names_its_missing_weights(path, tiny_cfg, tmp_path, monkeypatch):
    paper = Config.fromfile(str(path)).model
    monkeypatch.chdir(tmp_path)  # no pretrain/ folder here, whatever the checkout holds
    # BERT is loaded when the model is built (Swin-B itself is swapped for the tiny one: the
    # check does not depend on it and building it is slow).
    cfg = copy.deepcopy(paper)
    cfg.backbone.vision = copy.deepcopy(tiny_cfg.model.backbone.vision)
    with pytest.raises(FileNotFoundError, match='pretrain/bert-base-uncased'):
        MODELS.build(cfg)
    # With BERT at hand, the Swin checkpoint is loaded (and found missing) by init_weights.
    cfg = shrink_paper_model(paper, tiny_cfg.model)
    cfg.backbone.vision.init_cfg = paper.backbone.vision.init_cfg
    model = MODELS.build(cfg)
    with pytest.raises(FileNotFoundError, match='swin_base_patch4_window12_384_22k.pth'):
        model.init_weights()
