from .inference import (
    BACKENDS,
    CheckpointMismatchError,
    flush_denormals_on_cpu,
    inference_model,
    init_model,
    load_checkpoint_strict,
    to_bgr_uint8,
)

__all__ = [
    'BACKENDS',
    'CheckpointMismatchError',
    'flush_denormals_on_cpu',
    'inference_model',
    'init_model',
    'load_checkpoint_strict',
    'to_bgr_uint8',
]
