from .image_file import (
    CorruptImageError,
    ImageData,
    Stretch,
    fit_stretch,
    parse_bands,
    parse_stretch,
    read_image_file,
)
from .safe_checkpoint import (
    SAFE_GLOBALS,
    UnsafeCheckpointError,
    load_local_checkpoint,
    register_safe_checkpointing,
)

__all__ = [
    'CorruptImageError',
    'ImageData',
    'Stretch',
    'fit_stretch',
    'parse_bands',
    'parse_stretch',
    'read_image_file',
    'SAFE_GLOBALS',
    'UnsafeCheckpointError',
    'load_local_checkpoint',
    'register_safe_checkpointing',
]
