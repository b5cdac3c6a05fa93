from .base import (
    REFSEGRS_CATEGORIES,
    RRSISD_CATEGORIES,
    ReferringSegDataset,
    build_split_dataset,
)
from .grefs import GRefCOCODataset
from .refer import CocoInstances, load_coco_instances, segmentation_to_rle
from .refsegrs import RefSegRSDataset
from .rrsisd import RRSISDDataset
from .safe_pickle import RestrictedUnpickler, UnsafePickleError, safe_load_pickle
from .transforms import *  # noqa: F401,F403
from .transforms import __all__ as _transforms_all

__all__ = [
    'CocoInstances',
    'GRefCOCODataset',
    'REFSEGRS_CATEGORIES',
    'RRSISD_CATEGORIES',
    'RRSISDDataset',
    'RefSegRSDataset',
    'ReferringSegDataset',
    'RestrictedUnpickler',
    'UnsafePickleError',
    'build_split_dataset',
    'load_coco_instances',
    'safe_load_pickle',
    'segmentation_to_rle',
    *_transforms_all,
]
