"""btdnet.apis.sentence_swap: the sentence-swap controls against hand-computed scores."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import DATASETS, MODELS
from mmseg.structures import SegDataSample

from btdnet.apis import init_model, sentence_swap, swap_records, swap_scores, swap_targets

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / 'configs' / 'btdnet' / 'btdnet_tiny_synthetic.py')


def _columns(*cols, shape=(4, 6)):
    mask = np.zeros(shape, np.uint8)
    mask[:, list(cols)] = 1
    return mask


def _two_target_case():
    """Image p: two red vehicles, A (columns 0-1) and B (columns 4-5), told apart by position.
    Image q: a red ship C (column 0) and a blue ship D (column 5), told apart by colour."""
    targets = [
        dict(image='p', text='the left red vehicle', gt=_columns(0, 1), colour='red'),
        dict(image='p', text='the right red vehicle', gt=_columns(4, 5), colour='red'),
        dict(image='q', text='the red ship', gt=_columns(0), colour='red'),
        dict(image='q', text='the blue ship', gt=_columns(5), colour='blue'),
    ]
    for target in targets:
        target['category'] = 'vehicle' if target['image'] == 'p' else 'ship'
    # What a model half-reading the position word predicts: for B's sentence it marks B and
    # column 1 of A; for A's sentence exactly A. C's sentence gives C and D (colour ignored),
    # D's sentence gives D.
    predictions = {
        'the left red vehicle': _columns(0, 1),
        'the right red vehicle': _columns(1, 4, 5),
        'the red ship': _columns(0, 5),
        'the blue ship': _columns(5),
    }
    return targets, predictions


def test_swap_scores_match_a_hand_made_case():
    targets, predictions = _two_target_case()
    records = swap_records(targets, [predictions[t['text']] for t in targets])
    pairs = {(r['target'], r['sentence']): (r['I'], r['U'], r['shared']) for r in records}
    assert pairs == {
        (0, 0): (8, 8, ('category', 'colour')),
        (0, 1): (4, 16, ('category', 'colour')),  # A's mask vs {1, 4, 5}: I column 1
        (1, 0): (0, 16, ('category', 'colour')),
        (1, 1): (8, 12, ('category', 'colour')),
        (2, 2): (4, 8, ('category', 'colour')),
        (2, 3): (0, 8, ('category',)),  # C's mask vs D's prediction
        (3, 2): (4, 8, ('category',)),  # D's mask vs C's prediction {0, 5}
        (3, 3): (4, 4, ('category', 'colour')),
    }
    scores = swap_scores(records)
    assert scores['own']['pairs'] == 4
    assert scores['own']['oIoU'] == pytest.approx(100 * (8 + 8 + 4 + 4) / (8 + 12 + 8 + 4))
    assert scores['own']['mIoU'] == pytest.approx(100 * (1 + 8 / 12 + 0.5 + 1) / 4)
    assert scores['all']['pairs'] == 4
    assert scores['all']['oIoU'] == pytest.approx(100 * (4 + 0 + 0 + 4) / (16 + 16 + 8 + 8))
    assert scores['all']['Pr@0.5'] == pytest.approx(25.0)  # only (D, C's sentence): IoU 0.5
    # Sharing colour (and category): only image p's two swaps.
    for name in ('same_colour', 'same_colour_category'):
        assert scores[name]['pairs'] == 2
        assert scores[name]['oIoU'] == pytest.approx(100 * 4 / 32)
        assert scores[name]['mIoU'] == pytest.approx(100 * (0.25 + 0) / 2)


def test_sentences_of_one_object_are_not_swapped_and_shapes_are_checked():
    gt = _columns(0)
    targets = [
        dict(image='p', text='the ship', gt=gt, object_id=7, colour='red'),
        dict(image='p', text='the red ship', gt=gt, object_id=7, colour='red'),
    ]
    scores = swap_scores(swap_records(targets, [gt, gt]))
    assert scores['own']['pairs'] == 2 and scores['all'] == dict(pairs=0)
    with pytest.raises(ValueError, match='one prediction per target'):
        swap_records(targets, [gt])
    other = [
        dict(image='p', text='a', gt=gt),
        dict(image='p', text='b', gt=_columns(0, shape=(5, 6))),
    ]
    with pytest.raises(
        ValueError, match=r'image p: the prediction for target 1 has shape \(5, 6\)'
    ):
        swap_records(other, [o['gt'] for o in other])


def test_controls_run_the_model_once_per_image(monkeypatch):
    targets, predictions = _two_target_case()
    calls = []

    def fake_inference(model, image, texts, batch_size=8):
        calls.append((image, list(texts)))
        return [
            SegDataSample(pred_sem_seg=PixelData(data=torch.from_numpy(predictions[t])[None]))
            for t in texts
        ]

    monkeypatch.setattr(sentence_swap, 'inference_model', fake_inference)
    scores = sentence_swap.sentence_swap_controls(None, targets)
    assert calls == [
        ('p', ['the left red vehicle', 'the right red vehicle']),
        ('q', ['the red ship', 'the blue ship']),
    ]
    assert scores['same_colour_category']['oIoU'] == pytest.approx(12.5)
    assert scores['all']['oIoU'] == pytest.approx(100 * 8 / 48)


def test_controls_on_the_tiny_model_and_synthetic_test_split(synthetic_rrsis_root, tmp_path):
    """End to end: dataset -> targets (masks at the original size) -> model -> scores."""
    init_default_scope('mmseg')
    cfg = Config.fromfile(TINY)
    ds_cfg = cfg.test_dataloader.dataset
    ds_cfg.data_root = str(synthetic_rrsis_root)
    dataset = DATASETS.build(ds_cfg)
    attributes = {
        dataset.get_data_info(k)['sample_id']: dict(colour='red', category='ship')
        for k in range(len(dataset))
    }
    targets = swap_targets(dataset, attributes)
    assert len(targets) == len(dataset) >= 2
    assert all(t['gt'].shape == (96, 96) and t['gt'].any() for t in targets)
    torch.manual_seed(0)
    checkpoint = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict()), checkpoint)
    model = init_model(TINY, str(checkpoint), device='cuda' if torch.cuda.is_available() else 'cpu')
    scores = sentence_swap.sentence_swap_controls(model, targets)
    n = len(targets)
    assert scores['own']['pairs'] == n
    assert scores['all']['pairs'] == scores['same_colour_category']['pairs'] == n * (n - 1)
    for name in ('own', 'all', 'same_colour', 'same_colour_category'):
        assert 0.0 <= scores[name]['oIoU'] <= 100.0


def test_sentence_swap_controls_tool(synthetic_rrsis_root, tmp_path, capsys):
    """tools/analysis_tools/sentence_swap_controls.py: the generator's attributes, JSON out."""
    from conftest import load_tool

    tool = load_tool('analysis_tools/sentence_swap_controls.py')
    init_default_scope('mmseg')
    torch.manual_seed(0)
    checkpoint = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=MODELS.build(Config.fromfile(TINY).model).state_dict()), checkpoint)
    base = [TINY, str(checkpoint), '--data-root', str(synthetic_rrsis_root)]
    with pytest.raises(SystemExit, match='expected a .json file'):
        tool.main([*base, '--out', str(tmp_path / 'scores.csv')])
    with pytest.raises(SystemExit, match='is not a file'):
        tool.main([*base, '--attributes', str(tmp_path / 'none.json')])
    out = tmp_path / 'scores.json'
    assert tool.main([*base, '--out', str(out)]) == 0
    scores = json.loads(out.read_text())
    # The fixture is the generator's colour task: every object has its own colour, so no
    # swap shares a colour, and the test image's targets are all paired.
    meta = json.loads((synthetic_rrsis_root / 'synthetic_meta.json').read_text())
    n = meta['samples']['test']
    assert scores['own']['pairs'] == n and scores['all']['pairs'] == n * (n - 1)
    assert scores['same_colour'] == scores['same_colour_category'] == dict(pairs=0)
    printed = capsys.readouterr().out
    assert re.search(r'same_colour_category\s+0\s+-', printed)
    assert re.search(rf'\nall\s+{n * (n - 1)}\s+{scores["all"]["oIoU"]:.2f}', printed)


def test_targets_of_a_generalized_set_are_its_one_target_sentences(synthetic, tmp_path):
    init_default_scope('mmseg')
    synthetic.generate(
        str(tmp_path), num_images=8, size=64, formats=('grefs',), task='generalized', eval_images=2
    )
    from btdnet.datasets import build_split_dataset

    cfg = Config.fromfile(str(ROOT / 'configs' / '_base_' / 'datasets' / 'synthetic_grefs.py'))
    dataset = build_split_dataset(cfg, 'train', str(tmp_path), pipeline=[])
    records = json.loads((tmp_path / 'synthetic_objects.json').read_text())
    one = [r['sent_id'] for r in records if r['split'] == 'train' and r['kind'] == 'one']
    assert len(one) < len(dataset)  # the set has sentences with no target or several
    targets = swap_targets(dataset, load_mask=lambda info: np.ones((2, 2), np.uint8))
    assert [t['sample_id'] for t in targets] == one
