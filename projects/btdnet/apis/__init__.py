from .inference import (
    CheckpointMismatchError,
    inference_model,
    init_model,
    load_checkpoint_strict,
    to_bgr_uint8,
)

__all__ = [
    'CheckpointMismatchError',
    'inference_model',
    'init_model',
    'load_checkpoint_strict',
    'to_bgr_uint8',
]
