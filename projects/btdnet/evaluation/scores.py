"""The referring-segmentation figures, from per-sample pixel counts.

Every sentence is one sample with the intersection ``I`` and union ``U`` (pixel counts) of its
predicted and ground-truth target masks.

* LAVT / RMSIN (:func:`referring_scores`): ``oIoU`` = sum I / sum U; ``mIoU`` = mean of I / U
  with 0 where U = 0; ``Pr@X`` = share of samples with IoU >= X.
* GRES (:func:`gres_scores`, generalized referring: a sentence may have no target), with the
  formulas as the GRES evaluation defines them since its Aug 2023 correction (no +1 in the
  denominators). A sample is *no-target* (ground truth) or *targeted*, and the model predicts
  no-target or targeted:

  - ``N-acc`` = TP / (TP + FN) over no-target samples (TP: predicted no-target);
  - ``T-acc`` = TN / (TN + FP) over targeted samples (TN: predicted targeted);
  - ``gIoU`` = mean over all samples of: 1 for a no-target sample predicted no-target, 0 when
    the decision is wrong (either way), I / U for a targeted sample predicted targeted;
  - ``cIoU`` = sum I / sum U over all samples, with a sample predicted no-target taken as an
    empty prediction (a rejected target keeps its U = its ground-truth pixels, I = 0; a rejected
    no-target sample adds nothing) and a no-target sample predicted targeted adding its marked
    pixels to U;
  - ``Pr@X``, ``oIoU``, ``mIoU`` as LAVT, over the targeted samples only (a target predicted
    no-target counts with I = 0).

All figures are percentages.
"""

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_IOU_THRS = (0.5, 0.6, 0.7, 0.8, 0.9)


def iou_from_counts(intersections, unions, *, empty_iou: float) -> np.ndarray:
    """Per-sample IoU = I / U from pixel counts, and ``empty_iou`` where U = 0.

    U = 0 means both masks are empty. The answer there is a convention, so callers state it:

    * ``empty_iou=0.0``: LAVT / RMSIN (a sample with nothing to find scores nothing): the
      RRSIS-D / RefSegRS figures ``mIoU`` and ``Pr@X``, and the per-sample ``IoU`` of the dump;
    * ``empty_iou=1.0``: GRES (an empty prediction for a sentence without target is a perfect
      answer), and any "do two predictions agree" measure.

    Args:
        intersections (array-like): (N,) or scalar, pixels in both masks.
        unions (array-like): Same shape, pixels in either mask.
        empty_iou (float): The IoU where U = 0 (keyword only).

    Returns:
        np.ndarray: float64 IoUs of the input's shape.
    """
    intersections = np.asarray(intersections, dtype=np.float64)
    unions = np.asarray(unions, dtype=np.float64)
    ious = np.full(np.broadcast(intersections, unions).shape, float(empty_iou))
    np.divide(intersections, unions, out=ious, where=unions > 0)
    return ious


def sample_ious(intersections, unions) -> np.ndarray:
    """Per-sample IoU as LAVT computes it: :func:`iou_from_counts` with ``empty_iou=0.0``."""
    return iou_from_counts(intersections, unions, empty_iou=0.0)


def referring_scores(
    intersections, unions, iou_thrs: Sequence[float] = DEFAULT_IOU_THRS
) -> OrderedDict:
    """``Pr@X``, ``oIoU`` and ``mIoU`` (percent) of samples given their I and U pixel counts.

    Args:
        intersections (array-like): (N,) predicted-and-true target pixels per sample.
        unions (array-like): (N,) predicted-or-true target pixels per sample.
        iou_thrs (Sequence[float]): The thresholds X of ``Pr@X``.

    Returns:
        OrderedDict: ``Pr@X`` for each threshold (share of samples with IoU >= X), ``oIoU``
        (sum I / sum U; 0 when sum U = 0) and ``mIoU`` (mean of :func:`sample_ious`); all 0 when
        there are no samples.
    """
    inter = np.asarray(intersections, dtype=np.int64)
    union = np.asarray(unions, dtype=np.int64)
    ious = sample_ious(inter, union)
    metrics = OrderedDict()
    for thr in iou_thrs:
        metrics[f'Pr@{thr:g}'] = 100.0 * float(np.mean(ious >= thr)) if ious.size else 0.0
    total_union = int(union.sum())
    metrics['oIoU'] = 100.0 * int(inter.sum()) / total_union if total_union else 0.0
    metrics['mIoU'] = 100.0 * float(np.mean(ious)) if ious.size else 0.0
    return metrics


@dataclass(frozen=True)
class DecisionCounts:
    """How the target-existence decisions fall (GRES's confusion counts).

    Args:
        tp (int): No-target samples predicted no-target.
        fn (int): No-target samples predicted targeted.
        tn (int): Targeted samples predicted targeted.
        fp (int): Targeted samples predicted no-target.
    """

    tp: int
    fn: int
    tn: int
    fp: int

    @classmethod
    def of(cls, no_target: np.ndarray, pred_no_target: np.ndarray) -> 'DecisionCounts':
        """Count from (N,) bool arrays of ground truth and prediction."""
        nt, pnt = np.asarray(no_target, bool), np.asarray(pred_no_target, bool)
        return cls(
            tp=int((nt & pnt).sum()),
            fn=int((nt & ~pnt).sum()),
            tn=int((~nt & ~pnt).sum()),
            fp=int((~nt & pnt).sum()),
        )

    @property
    def n_acc(self) -> float:
        """N-acc in percent (0 when there is no no-target sample)."""
        total = self.tp + self.fn
        return 100.0 * self.tp / total if total else 0.0

    @property
    def t_acc(self) -> float:
        """T-acc in percent (0 when there is no targeted sample)."""
        total = self.tn + self.fp
        return 100.0 * self.tn / total if total else 0.0


def generalized_ious(intersections, unions, no_target, pred_no_target) -> np.ndarray:
    """Per-sample IoU of the GRES ``gIoU``: 0 for a wrong decision, else I / U with 1 for 0 / 0.

    Args:
        intersections (array-like): (N,) I per sample, a prediction of no target counted as an
            empty mask.
        unions (array-like): (N,) U per sample, likewise.
        no_target (array-like): (N,) bool, the sample has no target.
        pred_no_target (array-like): (N,) bool, the model decided there is none.

    Returns:
        np.ndarray: (N,) float64 in [0, 1].
    """
    agree = np.asarray(no_target, bool) == np.asarray(pred_no_target, bool)
    return np.where(agree, iou_from_counts(intersections, unions, empty_iou=1.0), 0.0)


def gres_scores(
    intersections,
    unions,
    no_target,
    pred_no_target,
    iou_thrs: Sequence[float] = DEFAULT_IOU_THRS,
) -> tuple[OrderedDict, DecisionCounts]:
    """The GRES figures, then the LAVT figures over the targeted samples (see the module doc).

    Args:
        intersections (array-like): (N,) I per sample; a prediction of no target counts as an
            empty mask (I = 0, U = the ground truth's pixels).
        unions (array-like): (N,) U per sample, likewise.
        no_target (array-like): (N,) bool ground truth: the sample has no target.
        pred_no_target (array-like): (N,) bool decision: the model found no target.
        iou_thrs (Sequence[float]): The thresholds X of ``Pr@X``.

    Returns:
        tuple: OrderedDict ``gIoU``, ``cIoU``, ``N-acc``, ``T-acc``, ``Pr@X``, ``oIoU``,
        ``mIoU`` (percent; a ratio whose denominator is 0, e.g. ``cIoU`` when every sample is a
        rejected no-target one, is 0), and the :class:`DecisionCounts`.
    """
    inter = np.asarray(intersections, dtype=np.int64)
    union = np.asarray(unions, dtype=np.int64)
    nt = np.asarray(no_target, bool)
    counts = DecisionCounts.of(nt, pred_no_target)
    total_union = int(union.sum())
    metrics = OrderedDict(
        gIoU=100.0 * float(np.mean(generalized_ious(inter, union, nt, pred_no_target))),
        cIoU=100.0 * int(inter.sum()) / total_union if total_union else 0.0,
    )
    metrics['N-acc'] = counts.n_acc
    metrics['T-acc'] = counts.t_acc
    metrics.update(referring_scores(inter[~nt], union[~nt], iou_thrs))
    return metrics, counts
