from .rrsis_metric import RRSISMetric, existence_score, safe_file_stem, write_mask_png
from .scores import (
    DecisionCounts,
    generalized_ious,
    gres_scores,
    iou_from_counts,
    referring_scores,
    sample_ious,
)

__all__ = [
    'DecisionCounts',
    'RRSISMetric',
    'existence_score',
    'generalized_ious',
    'gres_scores',
    'iou_from_counts',
    'referring_scores',
    'safe_file_stem',
    'sample_ious',
    'write_mask_png',
]
