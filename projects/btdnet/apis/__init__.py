from .inference import (
    BACKENDS,
    CheckpointMismatchError,
    flush_denormals_on_cpu,
    inference_model,
    init_model,
    load_checkpoint_strict,
    to_bgr_uint8,
)
from .sentence_swap import (
    SWAP_SUBSETS,
    sentence_swap_controls,
    swap_records,
    swap_scores,
    swap_targets,
)

__all__ = [
    'BACKENDS',
    'SWAP_SUBSETS',
    'CheckpointMismatchError',
    'flush_denormals_on_cpu',
    'inference_model',
    'init_model',
    'load_checkpoint_strict',
    'sentence_swap_controls',
    'swap_records',
    'swap_scores',
    'swap_targets',
    'to_bgr_uint8',
]
