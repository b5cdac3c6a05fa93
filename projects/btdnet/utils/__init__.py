from .safe_checkpoint import (
    SAFE_GLOBALS,
    UnsafeCheckpointError,
    load_local_checkpoint,
    register_safe_checkpointing,
)

__all__ = [
    'SAFE_GLOBALS',
    'UnsafeCheckpointError',
    'load_local_checkpoint',
    'register_safe_checkpointing',
]
