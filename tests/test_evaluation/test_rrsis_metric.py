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

from btdnet.evaluation import RRSISMetric, existence_score, iou_from_counts, sample_ious


def make_sample(
    pred,
    gt=None,
    sample_id='s',
    category=None,
    text='the thing',
    logits=None,
    img_shape=None,
    **meta,
):
    """A model output as the runner hands it to the metric (a dict of a SegDataSample).

    ``meta``: further metainfo (``no_target``, ``pred_no_target``, ...).
    """
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
            **meta,
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


# ---------------------------------------------------------------- generalized splits (GRES)
LAVT_KEYS = ['Pr@0.5', 'Pr@0.6', 'Pr@0.7', 'Pr@0.8', 'Pr@0.9', 'oIoU', 'mIoU']


def row(*spans, width=10):
    """A (1, width) 0/1 mask, target pixels in the half-open ranges ``spans``."""
    mask = np.zeros((1, width), np.uint8)
    for start, stop in spans:
        mask[0, start:stop] = 1
    return mask


# (sample_id, gt, pred, no_target, model decision (None: the mask alone decides), category,
#  hand I, hand U) -- I and U as scored: a decision of no target counts as an empty mask.
CASES = [
    # no-target samples (ground truth empty)
    ('n1', row(), row(), True, True, 'no target', 0, 0),  # TP
    ('n2', row(), row(), True, True, 'no target', 0, 0),  # TP
    ('n3', row(), row((0, 3)), True, False, 'no target', 0, 3),  # FN, 3 marked pixels
    ('n4', row(), row((2, 7)), True, False, 'no target', 0, 5),  # FN, 5 marked pixels
    ('n5', row(), row(), True, None, 'no target', 0, 0),  # TP by the empty mask
    ('n6', row(), row((8, 10)), True, None, 'no target', 0, 2),  # FN by the mask, 2 pixels
    ('n7', row(), row((0, 4)), True, True, 'no target', 0, 0),  # TP: the decision wins
    # targeted samples
    ('t1', row((0, 4)), row(), False, True, 'car', 0, 4),  # FP
    ('t2', row((0, 6)), row(), False, None, 'car', 0, 6),  # FP by the empty mask
    ('t3', row((0, 5)), row((0, 5)), False, False, 'car', 5, 5),  # 1
    ('t4', row((0, 4)), row((0, 2)), False, None, 'car', 2, 4),  # 0.5
    ('t5', row((0, 10)), row((0, 7)), False, False, 'car', 7, 10),  # 0.7
    ('t6', row((0, 5)), row((2, 8)), False, False, 'car', 3, 8),  # 0.375
    ('t7', row((0, 9)), row((0, 8)), False, None, 'car', 8, 9),  # 8/9
    ('t8', row((0, 5)), row((5, 10)), False, None, 'car + tree', 0, 10),  # 0, decided targeted
    ('t9', row((0, 10)), row((0, 6)), False, False, 'car + tree', 6, 10),  # 0.6
    ('t10', row((0, 6)), row((0, 5)), False, False, 'car + tree', 5, 6),  # 5/6
    ('t11', row((0, 3)), row(), False, True, 'car + tree', 0, 3),  # FP
    ('t12', row((0, 10)), row((1, 10)), False, False, 'car + tree', 9, 10),  # 0.9
    ('t13', row((0, 8)), row((0, 10)), False, None, 'car + tree', 8, 10),  # 0.8
]


def gres_samples(cases=CASES, generalized=True):
    samples = []
    for k, (sid, gt, pred, no_target, decision, cat, _, _) in enumerate(cases):
        meta = dict(no_target=no_target, num_targets=0 if no_target else 1 + k % 2)
        if not generalized:
            meta = {}
        if decision is not None:
            meta.update(pred_no_target=decision, no_target_prob=0.9 if decision else 0.2)
        samples.append(make_sample(pred, gt, sid, cat, **meta))
    return samples


def test_gres_figures_match_hand_computed_values():
    metric = RRSISMetric()
    metric.process({}, gres_samples())
    assert [(r['I'], r['U']) for r in metric.results] == [(c[6], c[7]) for c in CASES]
    scores = metric.evaluate(len(CASES))
    # Decisions: no-target n1 n2 n5 n7 predicted so (TP = 4), n3 n4 n6 not (FN = 3);
    # targeted t1 t2 t11 predicted no-target (FP = 3), the other 10 targeted (TN = 10).
    assert scores['N-acc'] == pytest.approx(100 * 4 / 7, abs=1e-12)
    assert scores['T-acc'] == pytest.approx(100 * 10 / 13, abs=1e-12)
    # gIoU: 1 for each TP (4), 0 for FN and FP, I / U for the 10 TN:
    # 1 + 0.5 + 0.7 + 0.375 + 8/9 + 0 + 0.6 + 5/6 + 0.9 + 0.8; over all 20 samples.
    tn_sum = 1 + 0.5 + 0.7 + 0.375 + 8 / 9 + 0 + 0.6 + 5 / 6 + 0.9 + 0.8
    assert scores['gIoU'] == pytest.approx(100 * (4 + tn_sum) / 20, abs=1e-12)
    # cIoU: I = 5+2+7+3+8+6+5+9+8 = 53; U = targeted 4+6+5+4+10+8+9+10+10+6+3+10+10 = 95,
    # plus the marked pixels of the no-target samples predicted targeted: 3 + 5 + 2 = 10.
    assert scores['cIoU'] == pytest.approx(100 * 53 / 105, abs=1e-12)
    # LAVT figures over the 13 targeted samples: oIoU = 53 / 95; IoUs (t1..t13)
    # 0, 0, 1, .5, .7, .375, 8/9, 0, .6, 5/6, 0, .9, .8 -> the same sum as tn_sum.
    assert scores['oIoU'] == pytest.approx(100 * 53 / 95, abs=1e-12)
    assert scores['mIoU'] == pytest.approx(100 * tn_sum / 13, abs=1e-12)
    # >= .5: t3 t4 t5 t7 t9 t10 t12 t13; >= .6: drop t4; >= .7: drop t9; >= .8: drop t5;
    # >= .9: t3 and t12 only.
    for thr, hits in (('0.5', 8), ('0.6', 7), ('0.7', 6), ('0.8', 5), ('0.9', 2)):
        assert scores[f'Pr@{thr}'] == pytest.approx(100 * hits / 13, abs=1e-12), thr
    assert scores['mIoU/car'] == pytest.approx(100 * (1 + 0.5 + 0.7 + 0.375 + 8 / 9) / 7)
    assert scores['mIoU/car + tree'] == pytest.approx(100 * (0.6 + 5 / 6 + 0.9 + 0.8) / 6)
    assert list(scores) == [
        'gIoU',
        'cIoU',
        'N-acc',
        'T-acc',
        *LAVT_KEYS,
        'mIoU/car',
        'mIoU/car + tree',
    ]


def test_decision_fields_recorded():
    metric = RRSISMetric()
    metric.process({}, gres_samples())
    by_id = {r['sample_id']: r for r in metric.results}
    assert (by_id['n5']['pred_no_target'], by_id['n5']['no_target_prob']) == (True, None)
    assert (by_id['n6']['pred_no_target'], by_id['t2']['pred_no_target']) == (False, True)
    assert by_id['n7']['pred_no_target'] is True and by_id['n7']['no_target_prob'] == 0.9
    assert by_id['t3']['no_target'] is False and by_id['t3']['num_targets'] == 2


def test_split_without_no_target_samples_is_unchanged(log_messages, tmp_path):
    """Targeted samples only: keys, values, tables and dump are RRSIS-D's, decisions or not."""
    targeted = [c for c in CASES if not c[3]]
    outputs = []
    for generalized in (False, True):
        log_messages.clear()
        dump = tmp_path / 'd.csv'  # one path: the log lines name it
        scores = evaluate(RRSISMetric(dump_file=str(dump)), gres_samples(targeted, generalized))
        outputs.append((scores, list(log_messages), dump.read_text()))
    (plain, plain_log, plain_dump), (marked, marked_log, marked_dump) = outputs
    assert plain == marked and marked_log == plain_log and marked_dump == plain_dump
    assert list(plain) == [*LAVT_KEYS, 'mIoU/car', 'mIoU/car + tree']
    assert plain['oIoU'] == pytest.approx(100 * 53 / 95, abs=1e-12)  # by hand, as above
    assert plain_dump.splitlines()[0] == (
        'sample_id,text,category,img_path,I,U,IoU,fg_fraction,fg_margin'
    )
    assert not [m for m in plain_log if 'GRES' in m]


def test_generalized_tables_and_dump_columns(log_messages, tmp_path):
    log_messages.clear()
    metric = RRSISMetric(dump_file=str(tmp_path / 'd.json'), output_dir=str(tmp_path / 'out'))
    evaluate(metric, gres_samples())
    gres = [m for m in log_messages if m.startswith('GRES scores')]
    assert len(gres) == 1
    header, values = [line for line in gres[0].splitlines() if line.startswith('|')][:2]
    assert [c.strip() for c in header.split('|')[1:-1]] == [
        'gIoU',
        'cIoU',
        'N-acc',
        'T-acc',
        'samples',
        'no target',
        'TP',
        'FN',
        'TN',
        'FP',
    ]
    assert [c.strip() for c in values.split('|')[1:-1]][4:] == ['20', '7', '4', '3', '10', '3']
    lavt = next(m for m in log_messages if 'over the targeted samples' in m)
    assert lavt.splitlines()[-2].split('|')[-2].strip() == '13'  # the samples column
    dump = {r['sample_id']: r for r in json.loads((tmp_path / 'd.json').read_text())}
    assert list(dump['n1'])[-5:] == [
        'no_target',
        'num_targets',
        'pred_no_target',
        'no_target_prob',
        'gIoU',
    ]
    assert (dump['n1']['IoU'], dump['n1']['gIoU']) == (0.0, 1.0)  # LAVT 0 / GRES 1 for 0 / 0
    assert (dump['n3']['gIoU'], dump['t1']['gIoU'], dump['t4']['gIoU']) == (0.0, 0.0, 0.5)
    with open(tmp_path / 'out' / 'index.csv', newline='') as f:
        index = list(csv.DictReader(f))
    assert list(index[0])[:2] == ['sample_id', 'mask'] and list(index[0])[-1] == 'gIoU'


def test_two_ranks_reduce_to_the_single_process_figures():
    samples = gres_samples()
    single = evaluate(RRSISMetric(), samples)
    ranks = [RRSISMetric(), RRSISMetric()]
    for rank, metric in enumerate(ranks):
        metric.process({}, samples[rank::2])
    gathered = [r for pair in zip(ranks[0].results, ranks[1].results) for r in pair]
    assert RRSISMetric().compute_metrics(gathered) == single


def test_all_no_target_split():
    cases = [c for c in CASES if c[3]]
    scores = evaluate(RRSISMetric(), gres_samples(cases))
    assert scores['N-acc'] == pytest.approx(100 * 4 / 7) and scores['T-acc'] == 0.0
    assert scores['gIoU'] == pytest.approx(100 * 4 / 7) and scores['cIoU'] == 0.0  # I = 0
    assert scores['oIoU'] == scores['mIoU'] == scores['Pr@0.5'] == 0.0  # no targeted sample


def test_iou_from_counts_states_its_empty_answer():
    inter, union = np.array([0, 2, 0]), np.array([0, 4, 3])
    np.testing.assert_array_equal(iou_from_counts(inter, union, empty_iou=1.0), [1.0, 0.5, 0.0])
    np.testing.assert_array_equal(iou_from_counts(inter, union, empty_iou=0.0), [0.0, 0.5, 0.0])
    np.testing.assert_array_equal(sample_ious(inter, union), [0.0, 0.5, 0.0])  # LAVT's
    assert float(iou_from_counts(0, 0, empty_iou=1.0)) == 1.0
    with pytest.raises(TypeError):
        iou_from_counts(inter, union)  # the convention must be stated
