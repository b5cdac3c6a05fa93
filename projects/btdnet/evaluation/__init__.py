from .rrsis_metric import (
    RRSISMetric,
    existence_score,
    referring_scores,
    safe_file_stem,
    sample_ious,
    write_mask_png,
)

__all__ = [
    'RRSISMetric',
    'existence_score',
    'referring_scores',
    'safe_file_stem',
    'sample_ious',
    'write_mask_png',
]
