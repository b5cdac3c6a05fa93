"""Referring-segmentation scores as LAVT / RMSIN compute them, plus prediction export.

Every sentence is one sample. For each sample the metric keeps the intersection ``I`` and union
``U`` of the predicted and ground-truth target masks (pixel counts), and from those records:

* ``oIoU`` (overall IoU) = sum(I) / sum(U) over all samples;
* ``mIoU`` (mean IoU) = mean over samples of I / U, with IoU = 0 where U = 0 (both masks empty);
* ``Pr@X`` = share of samples whose IoU >= X, for X in 0.5, 0.6, 0.7, 0.8, 0.9;
* ``mIoU/<category>``: the mean IoU of the samples of one category (the paper's Tables I-IV).

When a split holds samples without target (``no_target=True`` in their metainfo: generalized
referring, gRefCOCO layout), the metric adds the GRES figures ``gIoU``, ``cIoU``, ``N-acc`` and
``T-acc`` and computes the figures above over the targeted samples only; see
:mod:`btdnet.evaluation.scores`, which holds every formula.

All scores are percentages, as LAVT prints them. Because ``process`` keeps only small per-sample
records, results gathered from several ranks reduce to exactly the single-process numbers.

The *target-existence score* of a prediction (:func:`existence_score`) is computed from its fg/bg
logits: the fraction of pixels the foreground wins (``fg > bg``) and the mean margin ``fg - bg``
over those pixels. A sentence naming nothing in the image should give a small fraction and a small
margin; the paper names not knowing whether the target exists as its limitation.
"""

import csv
import json
import os
import os.path as osp
import re
from collections import OrderedDict
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmengine.utils import mkdir_or_exist
from mmseg.registry import METRICS
from prettytable import PrettyTable

from .scores import (
    DEFAULT_IOU_THRS,
    DecisionCounts,
    generalized_ious,
    gres_scores,
    iou_from_counts,
    referring_scores,
    sample_ious,
)

__all__ = [
    'GRES_FIELDS',
    'INDEX_FIELDS',
    'RECORD_FIELDS',
    'RRSISMetric',
    'existence_score',
    'iou_from_counts',
    'referring_scores',
    'safe_file_stem',
    'sample_ious',
    'write_mask_png',
]

# Columns of the per-sample dump and of the prediction index, in order.
RECORD_FIELDS = (
    'sample_id',
    'text',
    'category',
    'img_path',
    'I',
    'U',
    'IoU',
    'fg_fraction',
    'fg_margin',
)
INDEX_FIELDS = ('sample_id', 'mask', *RECORD_FIELDS[1:])
# Appended to both when the split is generalized (has samples without target).
GRES_FIELDS = ('no_target', 'num_targets', 'pred_no_target', 'no_target_prob', 'gIoU')
_UNSAFE_CHARS = re.compile(r'[^A-Za-z0-9_.-]+')


def existence_score(seg_logits: torch.Tensor) -> dict:
    """How strongly a prediction claims that the referred target exists.

    Args:
        seg_logits (Tensor): Logits of shape (2, H, W): channel 0 background, channel 1 target.

    Returns:
        dict: ``fg_fraction`` (float in [0, 1]): share of pixels where the target logit is
        strictly larger than the background logit (the pixels the predicted mask holds);
        ``fg_margin`` (float >= 0): mean of ``fg - bg`` over those pixels, 0.0 when there are none.
    """
    if seg_logits.dim() != 3 or seg_logits.shape[0] != 2:
        raise ValueError(
            'existence_score expects seg_logits of shape (2, H, W) (bg, fg), found '
            f'{tuple(seg_logits.shape)}'
        )
    margin = (seg_logits[1] - seg_logits[0]).float()
    won = margin > 0
    num_won = int(won.sum())
    return dict(
        fg_fraction=num_won / margin.numel(),
        fg_margin=float(margin[won].mean()) if num_won else 0.0,
    )


def safe_file_stem(name: str) -> str:
    """A file name made of ``name`` with anything but letters, digits, ``_.-`` replaced."""
    stem = _UNSAFE_CHARS.sub('_', str(name)).strip('._')
    return stem or 'sample'


def _write_table(path: str, rows: list, fields: Sequence[str]) -> None:
    """Write records as JSON (a list of objects) or CSV, by the extension of ``path``."""
    mkdir_or_exist(osp.dirname(osp.abspath(path)))
    if path.lower().endswith('.json'):
        with open(path, 'w', encoding='utf-8') as f:
            json.dump([{k: row.get(k) for k in fields} for row in rows], f, indent=1)
        return
    with open(path, 'w', encoding='utf-8', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction='ignore')
        writer.writeheader()
        for row in rows:
            writer.writerow({k: '' if row.get(k) is None else row.get(k) for k in fields})


def write_mask_png(path: str, mask: np.ndarray) -> None:
    """Save a 0/1 mask as an 8-bit PNG with target = 255, atomically (ranks may race)."""
    ok, buf = cv2.imencode('.png', (np.asarray(mask) > 0).astype(np.uint8) * 255)
    if not ok:
        raise OSError(f'could not encode a mask of shape {mask.shape} as PNG for {path}')
    mkdir_or_exist(osp.dirname(osp.abspath(path)))
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'wb') as f:
        f.write(buf.tobytes())
    os.replace(tmp, path)


@METRICS.register_module()
class RRSISMetric(BaseMetric):
    """Pr@X, oIoU, mIoU and per-category mIoU of referring segmentation (LAVT's definitions).

    Inputs per sample (a :class:`~mmseg.structures.SegDataSample` as a dict): ``pred_sem_seg``
    (data (1, H, W), target = nonzero) at the original size, ``gt_sem_seg`` (same size, target =
    nonzero), optional ``seg_logits`` (data (2, H, W), bg then fg) for the existence score, and the
    metainfo ``sample_id``, ``text``, ``category``, ``img_path``, ``img_shape``; for generalized
    referring also ``no_target`` / ``num_targets`` (ground truth, from the dataset) and the
    model's ``pred_no_target`` (bool) / ``no_target_prob`` (float in [0, 1]). A model that sets no
    ``pred_no_target`` is taken to predict "no target" exactly when its mask is empty (the
    "mask alone" rule); a decision of no target is scored as an empty mask, whatever the mask.

    Outputs:

    * ``compute_metrics`` returns ``Pr@0.5`` ... ``Pr@0.9``, ``oIoU``, ``mIoU`` and (with
      ``per_category``) ``mIoU/<category>``, all in percent, and logs them as tables. When the
      split has at least one sample with ``no_target=True`` it returns first ``gIoU``, ``cIoU``,
      ``N-acc``, ``T-acc`` (GRES's definitions, see :func:`~btdnet.evaluation.scores.gres_scores`)
      and then the figures above over the targeted samples only, and logs the decision counts;
      without such samples, keys, values and tables are LAVT's alone;
    * ``dump_file`` (``.json`` or ``.csv``): one record per sample with
      ``sample_id, text, category, img_path, I, U, IoU, fg_fraction, fg_margin`` (IoU in [0, 1]),
      written by rank 0, for error analysis;
    * ``output_dir``: every rank writes the predicted masks it saw to
      ``output_dir/masks/<sample_id>.png`` (8-bit, target = 255, original size), and rank 0 writes
      ``output_dir/index.csv`` with ``sample_id, mask`` (path relative to ``output_dir``) and the
      fields of the dump. ``tools/test.py --out DIR`` sets it. For a generalized split both
      tables gain the columns ``no_target, num_targets, pred_no_target, no_target_prob, gIoU``
      (the per-sample term of gIoU; ``IoU`` stays LAVT's I / U, 0 where U = 0).

    Args:
        iou_thrs (Sequence[float]): Thresholds X of ``Pr@X``. Default (0.5, 0.6, 0.7, 0.8, 0.9).
        score_at (str): ``'original'`` (default) scores at each image's original size;
            ``'input'`` resizes prediction and ground truth to the network input size
            (``img_shape``, nearest neighbour) first, as LAVT and RMSIN score at 480 x 480.
        per_category (bool): Add ``mIoU/<category>`` to the returned metrics. The per-category
            table is logged either way; on a generalized split it covers the targeted samples
            (``mIoU`` / ``oIoU`` as LAVT's). Default True.
        dump_file (str, optional): Path of the per-sample dump, ending in ``.json`` or ``.csv``.
        output_dir (str, optional): Folder for predicted masks and their index.
        format_only (bool): Only write predictions (``output_dir``), for test sets without
            ground truth; returns no scores. Default False.
        collect_device (str): ``'cpu'`` or ``'gpu'``, for gathering records across ranks.
        prefix (str, optional): Prefix of the metric names. Default None (``oIoU`` etc.).
    """

    default_prefix = None

    def __init__(
        self,
        iou_thrs: Sequence[float] = DEFAULT_IOU_THRS,
        score_at: str = 'original',
        per_category: bool = True,
        dump_file: str | None = None,
        output_dir: str | None = None,
        format_only: bool = False,
        collect_device: str = 'cpu',
        prefix: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, **kwargs)
        if score_at not in ('original', 'input'):
            raise ValueError(
                f"RRSISMetric: score_at must be 'original' or 'input', found {score_at!r}"
            )
        thrs = tuple(float(t) for t in iou_thrs)
        if not thrs or any(not 0.0 < t <= 1.0 for t in thrs):
            raise ValueError(f'RRSISMetric: iou_thrs must lie in (0, 1], found {iou_thrs!r}')
        if dump_file is not None and not str(dump_file).lower().endswith(('.json', '.csv')):
            raise ValueError(
                f'RRSISMetric: dump_file must end in .json or .csv, found {dump_file!r}'
            )
        if format_only and output_dir is None:
            raise ValueError('RRSISMetric: format_only=True needs output_dir to write masks to')
        self.iou_thrs = thrs
        self.score_at = score_at
        self.per_category = per_category
        self.dump_file = dump_file
        self.output_dir = output_dir
        self.format_only = format_only

    # ------------------------------------------------------------------ per sample
    def _masks(self, sample: dict, sample_id) -> tuple:
        """Prediction and ground truth as bool (H, W) tensors at the scoring size."""
        pred = sample['pred_sem_seg']['data']
        if 'gt_sem_seg' not in sample:
            raise KeyError(
                f'RRSISMetric: expected gt_sem_seg in the data sample of sample_id {sample_id} '
                f'({sample.get("img_path")}), found none; for a test set without masks set '
                'format_only=True and output_dir'
            )
        gt = sample['gt_sem_seg']['data'].to(pred.device)
        pred = pred.reshape(pred.shape[-2:]) if pred.dim() == 3 else pred
        gt = gt.reshape(gt.shape[-2:]) if gt.dim() == 3 else gt
        if pred.shape != gt.shape:
            raise ValueError(
                f'RRSISMetric: sample_id {sample_id} ({sample.get("img_path")}): expected '
                f'pred_sem_seg and gt_sem_seg of the same size, found {tuple(pred.shape)} and '
                f'{tuple(gt.shape)} (ori_shape {sample.get("ori_shape")})'
            )
        if self.score_at == 'input':
            if 'img_shape' not in sample:
                raise KeyError(
                    f"RRSISMetric(score_at='input'): sample_id {sample_id} has no img_shape"
                )
            size = tuple(int(s) for s in sample['img_shape'][:2])
            both = torch.stack([pred != 0, gt != 0])[None].float()
            both = F.interpolate(both, size=size, mode='nearest')[0]
            return both[0] > 0, both[1] > 0
        return pred != 0, gt != 0

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Keep I, U, existence score and identity of each sample; write masks if asked.

        Args:
            data_batch (dict): The batch from the dataloader (unused).
            data_samples (Sequence[dict]): The model's outputs as dicts.
        """
        for sample in data_samples:
            sample_id = sample.get('sample_id')
            if sample_id is None:
                sample_id = osp.splitext(osp.basename(str(sample.get('img_path', 'sample'))))[0]
            pred_no_target = _pred_no_target(sample)
            record = dict(
                sample_id=str(sample_id),
                text=sample.get('text'),
                category=sample.get('category'),
                img_path=sample.get('img_path'),
                I=None,
                U=None,
                fg_fraction=None,
                fg_margin=None,
                mask=None,
                no_target=_optional(bool, sample.get('no_target')),
                num_targets=_optional(int, sample.get('num_targets')),
                pred_no_target=pred_no_target,
                no_target_prob=_optional(float, sample.get('no_target_prob')),
            )
            if 'seg_logits' in sample:
                record.update(existence_score(sample['seg_logits']['data']))
            if not self.format_only:
                pred, gt = self._masks(sample, sample_id)
                if pred_no_target:  # the decision wins over the mask
                    pred = torch.zeros_like(gt)
                record['I'] = int((pred & gt).sum())
                record['U'] = int((pred | gt).sum())
            if self.output_dir is not None:
                record['mask'] = osp.join('masks', f'{safe_file_stem(sample_id)}.png')
                pred = sample['pred_sem_seg']['data']
                write_mask_png(
                    osp.join(self.output_dir, record['mask']),
                    pred.reshape(pred.shape[-2:]).cpu().numpy(),
                )
            self.results.append(record)

    # ------------------------------------------------------------------ reduction
    def compute_metrics(self, results: list) -> dict:
        """Reduce the per-sample records of all ranks (called on rank 0 only).

        Args:
            results (list[dict]): The records made by :meth:`process`.

        Returns:
            dict: ``Pr@X``, ``oIoU``, ``mIoU`` and ``mIoU/<category>`` in percent, preceded by
            ``gIoU``, ``cIoU``, ``N-acc``, ``T-acc`` when the split has samples without target;
            empty with ``format_only``.
        """
        if self.format_only:
            self._write_outputs(results)  # the IoU columns stay empty
            print_log(
                f'RRSISMetric: format_only, {len(results)} predicted masks written to '
                f'{self.output_dir}',
                logger='current',
            )
            return OrderedDict()
        if not results:
            raise ValueError('RRSISMetric: no samples were processed; is the test set empty?')
        inter = np.array([r['I'] for r in results], dtype=np.int64)
        union = np.array([r['U'] for r in results], dtype=np.int64)
        for record, iou in zip(results, sample_ious(inter, union)):
            record['IoU'] = float(iou)
        no_target = np.array([bool(r.get('no_target')) for r in results])
        counts = None
        if no_target.any():
            pred_no_target = np.array([bool(r.get('pred_no_target')) for r in results])
            metrics, counts = gres_scores(inter, union, no_target, pred_no_target, self.iou_thrs)
            for record, g in zip(
                results, generalized_ious(inter, union, no_target, pred_no_target)
            ):
                record['gIoU'] = float(g)
        else:
            metrics = referring_scores(inter, union, self.iou_thrs)
        per_category = self._per_category(results, inter, union, ~no_target)
        if self.per_category:
            for name, row in per_category.items():
                metrics[f'mIoU/{name}'] = row['mIoU']
        self._log_tables(metrics, per_category, int((~no_target).sum()), counts)
        self._write_outputs(results)
        return metrics

    @staticmethod
    def _per_category(results: list, inter, union, keep: np.ndarray) -> OrderedDict:
        """``n``, ``mIoU`` and ``oIoU`` (LAVT's) per category, over the samples ``keep`` marks."""
        categories = OrderedDict()
        for index, record in enumerate(results):
            if keep[index] and record['category'] is not None:
                categories.setdefault(str(record['category']), []).append(index)
        per_category = OrderedDict()
        for name in sorted(categories):
            idx = np.array(categories[name])
            scores = referring_scores(inter[idx], union[idx], ())
            per_category[name] = dict(n=len(idx), mIoU=scores['mIoU'], oIoU=scores['oIoU'])
        return per_category

    def _log_tables(
        self,
        metrics: dict,
        per_category: dict,
        num_targeted: int,
        counts: DecisionCounts | None = None,
    ) -> None:
        where = 'network input size' if self.score_at == 'input' else 'original size'
        if counts is not None:
            gres = PrettyTable()
            names = ['gIoU', 'cIoU', 'N-acc', 'T-acc']
            gres.field_names = [*names, 'samples', 'no target', 'TP', 'FN', 'TN', 'FP']
            gres.add_row(
                [f'{metrics[n]:.2f}' for n in names]
                + [counts.tp + counts.fn + counts.tn + counts.fp, counts.tp + counts.fn]
                + [counts.tp, counts.fn, counts.tn, counts.fp]
            )
            print_log(
                f'GRES scores (%, at the {where}; TP: a sample without target predicted so, '
                f'FP: a targeted one predicted without):\n{gres.get_string()}',
                logger='current',
            )
        overall = PrettyTable()
        names = [f'Pr@{t:g}' for t in self.iou_thrs] + ['oIoU', 'mIoU']
        overall.field_names = [*names, 'samples']
        overall.add_row([f'{metrics[n]:.2f}' for n in names] + [num_targeted])
        over = ', over the targeted samples' if counts is not None else ''
        print_log(
            f'RRSIS scores (%, at the {where}{over}):\n{overall.get_string()}', logger='current'
        )
        if per_category:
            table = PrettyTable()
            table.field_names = ['category', 'samples', 'mIoU', 'oIoU']
            for name, row in per_category.items():
                table.add_row([name, row['n'], f'{row["mIoU"]:.2f}', f'{row["oIoU"]:.2f}'])
            print_log(f'RRSIS scores per category (%):\n{table.get_string()}', logger='current')

    def _write_outputs(self, results: list) -> None:
        # Called from compute_metrics, which mmengine runs on the main process only.
        extra = GRES_FIELDS if any(r.get('no_target') for r in results) else ()
        if self.dump_file is not None:
            _write_table(self.dump_file, results, (*RECORD_FIELDS, *extra))
            print_log(
                f'RRSISMetric: per-sample results written to {self.dump_file}', logger='current'
            )
        if self.output_dir is not None:
            index = osp.join(self.output_dir, 'index.csv')
            _write_table(index, results, (*INDEX_FIELDS, *extra))
            print_log(f'RRSISMetric: predicted masks and {index} written', logger='current')


def _optional(kind, value):
    """``kind(value)`` (a plain Python scalar, also from a 0-d tensor), or None if absent."""
    if value is None:
        return None
    return kind(value.item() if hasattr(value, 'item') else value)


def _pred_no_target(sample: dict) -> bool:
    """The model's decision ``pred_no_target``, else the "mask alone" rule: no predicted pixel."""
    decision = sample.get('pred_no_target')
    if decision is not None:
        return _optional(bool, decision)
    return not bool(sample['pred_sem_seg']['data'].any())
