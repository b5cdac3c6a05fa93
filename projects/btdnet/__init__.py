"""BTDNet: referring remote-sensing image segmentation as an MMSegmentation plugin.

Importing this package (``custom_imports=dict(imports=['btdnet'])`` in a config) registers its
datasets, transforms, models, metrics and hooks into mmseg's registries, and makes mmengine's
checkpoints load under ``torch.load(weights_only=True)`` (see :mod:`btdnet.utils.safe_checkpoint`).
"""

from .utils import register_safe_checkpointing

register_safe_checkpointing()

from . import datasets, deployment, engine, evaluation, models, visualization  # noqa: E402,F401

__version__ = '0.1.0'
