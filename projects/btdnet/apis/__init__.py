from .inference import (
    CheckpointMismatchError,
    inference_model,
    init_model,
    load_checkpoint_strict,
    read_image,
    read_image_header,
    to_bgr_uint8,
    truncated_sentences,
)

__all__ = [
    'CheckpointMismatchError',
    'inference_model',
    'init_model',
    'load_checkpoint_strict',
    'read_image',
    'read_image_header',
    'to_bgr_uint8',
    'truncated_sentences',
]
