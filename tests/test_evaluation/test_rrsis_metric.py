"""RRSISMetric against hand-computed scores and an independent LAVT-style loop."""

import csv
import json

import cv2
import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from btdnet.evaluation import RRSISMetric, existence_score


def make_sample(
    pred, gt=None, sample_id='s', category=None, text='the thing', logits=None, img_shape=None
):
    """A model output as the runner hands it to the metric (a dict of a SegDataSample)."""
    pred = torch.as_tensor(np.asarray(pred), dtype=torch.long)
    sample = SegDataSample()
    sample.set_metainfo(
        dict(
            sample_id=sample_id,
            text=text,
            category=category,
            img_path=f'/imgs/{sample_id}.png',
            ori_shape=tuple(pred.shape),
            img_shape=img_shape or tuple(pred.shape),
        )
    )
    sample.pred_sem_seg = PixelData(data=pred[None])
    if gt is not None:
        sample.gt_sem_seg = PixelData(data=torch.as_tensor(np.asarray(gt), dtype=torch.long)[None])
    if logits is None:
        logits = torch.stack([torch.zeros(pred.shape), pred.float() * 2 - 1])
    sample.seg_logits = PixelData(data=torch.as_tensor(logits, dtype=torch.float32))
    return sample.to_dict()


def evaluate(metric, samples):
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def mask(rows):
    return np.array(rows, dtype=np.uint8)


# Six crafted 2x2 / 2x3 samples: (pred, gt, category, hand-computed I, U).
CRAFTED = [
    ('empty_pred', mask([[0, 0], [0, 0]]), mask([[1, 1], [1, 0]]), 'a', 0, 3),  # IoU 0
    ('empty_gt', mask([[1, 0], [0, 1]]), mask([[0, 0], [0, 0]]), 'b', 0, 2),  # IoU 0
    ('both_empty', mask([[0, 0], [0, 0]]), mask([[0, 0], [0, 0]]), 'b', 0, 0),  # U=0 -> 0
    ('perfect', mask([[1, 1], [1, 1]]), mask([[1, 1], [1, 1]]), 'a', 4, 4),  # IoU 1
    ('partial', mask([[1, 1, 1], [0, 0, 0]]), mask([[0, 1, 1], [1, 1, 0]]), 'b', 2, 5),  # 0.4
    ('half', mask([[1, 1], [0, 0]]), mask([[1, 1], [1, 1]]), 'a', 2, 4),  # exactly 0.5
]


def crafted_samples():
    return [make_sample(p, g, sid, cat) for sid, p, g, cat, _, _ in CRAFTED]


def test_crafted_cases_match_hand_computed_scores():
    metric = RRSISMetric()
    metric.process({}, crafted_samples())
    assert [(r['I'], r['U']) for r in metric.results] == [(i, u) for *_, i, u in CRAFTED]
    scores = metric.evaluate(len(CRAFTED))
    # By hand: I = 0+0+0+4+2+2 = 8, U = 3+2+0+4+5+4 = 18; IoUs 0, 0, 0, 1, 0.4, 0.5.
    assert scores['oIoU'] == pytest.approx(100 * 8 / 18, abs=1e-12)
    assert scores['mIoU'] == pytest.approx(100 * 1.9 / 6, abs=1e-12)
    assert scores['Pr@0.5'] == pytest.approx(100 * 2 / 6, abs=1e-12)  # 1.0 and exactly 0.5
    for thr in ('0.6', '0.7', '0.8', '0.9'):
        assert scores[f'Pr@{thr}'] == pytest.approx(100 / 6, abs=1e-12)
    assert scores['mIoU/a'] == pytest.approx(100 * 1.5 / 3, abs=1e-12)  # 0, 1, 0.5
    assert scores['mIoU/b'] == pytest.approx(100 * 0.4 / 3, abs=1e-12)  # 0, 0, 0.4
    assert list(scores)[:7] == ['Pr@0.5', 'Pr@0.6', 'Pr@0.7', 'Pr@0.8', 'Pr@0.9', 'oIoU', 'mIoU']


@pytest.mark.parametrize('sid', ['empty_pred', 'empty_gt', 'both_empty'])
def test_single_degenerate_sample_scores_zero(sid):
    _, pred, gt, cat, _, _ = next(c for c in CRAFTED if c[0] == sid)
    scores = evaluate(RRSISMetric(), [make_sample(pred, gt, sid, cat)])
    assert scores['oIoU'] == 0.0 and scores['mIoU'] == 0.0 and scores['Pr@0.5'] == 0.0


def test_iou_exactly_at_threshold_counts_as_correct():
    # 7 of 10 pixels -> IoU = 0.7 exactly: counted by Pr@0.7, not by Pr@0.8.
    gt = np.ones((2, 5), np.uint8)
    pred = gt.copy()
    pred[1, 2:] = 0
    scores = evaluate(RRSISMetric(per_category=False), [make_sample(pred, gt)])
    assert scores['Pr@0.7'] == 100.0 and scores['Pr@0.8'] == 0.0
    assert scores['oIoU'] == pytest.approx(70.0) and 'mIoU/None' not in scores


def lavt_reference(preds, gts, thrs=(0.5, 0.6, 0.7, 0.8, 0.9)):
    """LAVT's test loop, rewritten independently: accumulate I, U, IoU and hits per sample."""
    cum_i = cum_u = 0
    iou_sum = 0.0
    correct = [0] * len(thrs)
    for pred, gt in zip(preds, gts):
        p = pred.astype(bool)
        g = gt.astype(bool)
        i = int(np.logical_and(p, g).sum())
        u = int(np.logical_or(p, g).sum())
        this_iou = 0.0 if u == 0 else i * 1.0 / u
        iou_sum += this_iou
        for k, thr in enumerate(thrs):
            correct[k] += this_iou >= thr
        cum_i += i
        cum_u += u
    n = len(preds)
    out = {f'Pr@{thr:g}': 100.0 * c / n for thr, c in zip(thrs, correct)}
    out.update(oIoU=cum_i * 100.0 / cum_u, mIoU=iou_sum * 100.0 / n)
    return out


def random_masks(n, seed=0):
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for k in range(n):
        h, w = rng.integers(3, 12, size=2)
        gt = (rng.random((h, w)) < rng.uniform(0.1, 0.8)).astype(np.uint8)
        pred = gt.copy()
        flip = rng.random((h, w)) < rng.uniform(0.0, 0.5)
        pred[flip] ^= 1
        if k % 9 == 0:
            pred[:] = 0  # some empty predictions
        if k % 11 == 0:
            gt[:] = 0  # some empty targets
        preds.append(pred)
        gts.append(gt)
    return preds, gts


def test_random_masks_match_lavt_formula_in_one_process_and_over_two_ranks():
    preds, gts = random_masks(60)
    samples = [make_sample(p, g, f'id{k}', f'c{k % 3}') for k, (p, g) in enumerate(zip(preds, gts))]
    reference = lavt_reference(preds, gts)

    single = evaluate(RRSISMetric(), samples)
    for key, value in reference.items():
        assert single[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key

    # Two ranks, as DefaultSampler splits a dataset (rank r takes r, r + 2, ...) and as
    # mmengine's collect_results gathers the parts (interleaved) on rank 0.
    ranks = [RRSISMetric(), RRSISMetric()]
    for rank, metric in enumerate(ranks):
        metric.process({}, samples[rank::2])
    gathered = [r for pair in zip(ranks[0].results, ranks[1].results) for r in pair]
    split = RRSISMetric().compute_metrics(gathered)
    assert split == single
    assert [r['sample_id'] for r in gathered] == [f'id{k}' for k in range(60)]


def test_scoring_at_network_input_size_resizes_both_masks_nearest():
    gt = np.zeros((4, 4), np.uint8)
    gt[:2, :2] = 1
    pred = np.zeros((4, 4), np.uint8)
    pred[0, 0] = 1
    original = evaluate(RRSISMetric(), [make_sample(pred, gt, img_shape=(2, 2))])
    assert original['oIoU'] == pytest.approx(25.0)  # I = 1, U = 4
    # Nearest to 2x2 keeps pixels (0,0), (0,2), (2,0), (2,2): both masks become [[1,0],[0,0]].
    at_input = evaluate(RRSISMetric(score_at='input'), [make_sample(pred, gt, img_shape=(2, 2))])
    assert at_input['oIoU'] == 100.0
    # Upsampling 2x2 -> 4x4: each pixel becomes a 2x2 block: I = 4, U = 8.
    small_gt = mask([[1, 1], [0, 0]])
    small_pred = mask([[1, 0], [0, 0]])
    up = RRSISMetric(score_at='input')
    up.process({}, [make_sample(small_pred, small_gt, img_shape=(4, 4))])
    assert (up.results[0]['I'], up.results[0]['U']) == (4, 8)


def test_existence_score_fraction_and_margin():
    margin = torch.tensor([[2.0, -1.0], [0.0, 4.0]])  # fg - bg; 0 is a tie, won by bg
    logits = torch.stack([torch.ones(2, 2), torch.ones(2, 2) + margin])
    assert existence_score(logits) == dict(fg_fraction=0.5, fg_margin=3.0)
    assert existence_score(torch.stack([torch.ones(2, 2), torch.zeros(2, 2)])) == dict(
        fg_fraction=0.0, fg_margin=0.0
    )
    with pytest.raises(ValueError, match=r'\(2, H, W\).*\(3, 2, 2\)'):
        existence_score(torch.zeros(3, 2, 2))


def test_output_dir_masks_index_and_dumps(tmp_path):
    metric = RRSISMetric(output_dir=str(tmp_path / 'out'), dump_file=str(tmp_path / 'd.json'))
    samples = crafted_samples()
    samples[0]['sample_id'] = 'img 1/sent:0'  # unsafe characters become '_'
    scores = evaluate(metric, samples)
    assert scores['oIoU'] == pytest.approx(100 * 8 / 18)

    with open(tmp_path / 'out' / 'index.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [r['sample_id'] for r in rows][:2] == ['img 1/sent:0', 'empty_gt']
    assert rows[0]['mask'] == 'masks/img_1_sent_0.png'
    assert [(int(r['I']), int(r['U'])) for r in rows] == [(i, u) for *_, i, u in CRAFTED]
    assert float(rows[5]['IoU']) == 0.5 and rows[5]['category'] == 'a'
    assert float(rows[3]['fg_fraction']) == 1.0 and float(rows[3]['fg_margin']) == 1.0
    for row, (_, pred, *_rest) in zip(rows, CRAFTED):
        png = cv2.imread(str(tmp_path / 'out' / row['mask']), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint8 and np.array_equal(png, pred * 255)

    dump = json.loads((tmp_path / 'd.json').read_text())
    assert dump[4] == dict(
        sample_id='partial',
        text='the thing',
        category='b',
        img_path='/imgs/partial.png',
        I=2,
        U=5,
        IoU=0.4,
        fg_fraction=0.5,
        fg_margin=1.0,
    )

    csv_metric = RRSISMetric(dump_file=str(tmp_path / 'sub' / 'd.csv'))
    evaluate(csv_metric, crafted_samples())
    with open(tmp_path / 'sub' / 'd.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        'sample_id',
        'text',
        'category',
        'img_path',
        'I',
        'U',
        'IoU',
        'fg_fraction',
        'fg_margin',
    ]
    assert rows[2]['sample_id'] == 'both_empty' and float(rows[2]['IoU']) == 0.0


def test_format_only_writes_masks_without_ground_truth(tmp_path):
    metric = RRSISMetric(format_only=True, output_dir=str(tmp_path))
    scores = evaluate(metric, [make_sample(mask([[1, 0], [0, 0]]), None, 'x')])
    assert scores == {}
    png = cv2.imread(str(tmp_path / 'masks' / 'x.png'), cv2.IMREAD_UNCHANGED)
    assert png.tolist() == [[255, 0], [0, 0]]
    assert 'x,masks/x.png' in (tmp_path / 'index.csv').read_text()


def test_runs_through_mmengine_evaluator_with_data_samples():
    init_default_scope('mmseg')  # as configs set default_scope
    evaluator = Evaluator(dict(type='RRSISMetric'))
    sample = SegDataSample(metainfo=dict(sample_id='a', text='t', category='c'))
    sample.pred_sem_seg = PixelData(data=torch.tensor([[[1, 0]]]))
    sample.gt_sem_seg = PixelData(data=torch.tensor([[[1, 1]]]))
    evaluator.process([sample])
    assert evaluator.evaluate(1)['oIoU'] == pytest.approx(50.0)


def test_bad_input_errors_name_what_and_where():
    with pytest.raises(ValueError, match="'original' or 'input'.*'resized'"):
        RRSISMetric(score_at='resized')
    with pytest.raises(ValueError, match=r'\.json or \.csv.*out\.txt'):
        RRSISMetric(dump_file='out.txt')
    with pytest.raises(ValueError, match='iou_thrs'):
        RRSISMetric(iou_thrs=(0.5, 1.5))
    with pytest.raises(ValueError, match='format_only=True needs output_dir'):
        RRSISMetric(format_only=True)
    metric = RRSISMetric()
    with pytest.raises(ValueError, match=r'sample_id bad.*\(2, 2\) and \(3, 3\)'):
        metric.process({}, [make_sample(np.zeros((2, 2)), np.zeros((3, 3)), 'bad')])
    with pytest.raises(KeyError, match='gt_sem_seg.*sample_id nogt.*format_only'):
        metric.process({}, [make_sample(np.zeros((2, 2)), None, 'nogt')])
