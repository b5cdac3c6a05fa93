"""Loading aerial images (JPEG, TIF of any band count / depth) and referring masks."""

import functools
import os.path as osp

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.fileio import get
from mmseg.registry import TRANSFORMS
from pycocotools import mask as mask_utils

from ...utils.image_file import parse_bands, parse_stretch, read_image_file


@functools.lru_cache(maxsize=1 << 17)
def _rle_runs(height: int, width: int, counts: bytes) -> np.ndarray:
    """Run lengths (column-major, starting with background) of a compressed COCO RLE.

    ``pycocotools.mask.decode`` writes the mask byte by byte (~1 ms at 800 x 800) and returns it
    column-major, so a row-major copy costs as much again. The runs are computed once per mask
    (cached: a few hundred integers each, ~1 KB per RRSIS-D sample) and the mask is rebuilt from
    them with ``np.repeat`` + ``cv2.transpose`` (~0.2 ms).
    """
    flat = mask_utils.decode(dict(size=[height, width], counts=counts)).ravel(order='F')
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]]))
    if flat.size and flat[0]:
        runs = np.concatenate([[0], runs])
    runs = runs.astype(np.int64)
    runs.flags.writeable = False
    return runs


def _runs_of(rle: dict) -> tuple[int, int, np.ndarray]:
    """(height, width, cached runs) of a compressed COCO RLE."""
    height, width = (int(v) for v in rle['size'])
    counts = rle['counts']
    return (
        height,
        width,
        _rle_runs(height, width, counts.encode() if isinstance(counts, str) else counts),
    )


def rle_is_empty(rle: dict) -> bool:
    """Whether a compressed COCO RLE has no foreground pixel (from the cached runs, no decode)."""
    return not _runs_of(rle)[2][1::2].any()


def decode_rle(rle: dict) -> np.ndarray:
    """Decode a compressed COCO RLE to a row-major (H, W) uint8 0/1 mask (runs cached).

    Args:
        rle (dict): ``{'size': [h, w], 'counts': bytes | str}``.

    Returns:
        np.ndarray: (H, W) uint8, C-contiguous.
    """
    height, width, runs = _runs_of(rle)
    values = np.zeros(len(runs), np.uint8)
    values[1::2] = 1
    column_major = np.repeat(values, runs).reshape(width, height)
    return cv2.transpose(column_major) if height > 1 and width > 1 else column_major.T.copy()


def _read_bytes(path: str, what: str, sample_id, backend_args) -> bytes:
    try:
        return get(path, backend_args=backend_args)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f'Expected the {what} of sample_id {sample_id} at {path}, found no such file'
        ) from exc


@TRANSFORMS.register_module()
class LoadRSImageFromFile(BaseTransform):
    """Load an aerial image as 3-channel uint8 BGR, whatever its format, depth and bands.

    Reading is :func:`btdnet.utils.read_image_file`, the one reader of every entry point:

    * GeoTIFF / TIF / PNG through GDAL: band order follows the bands (``bands``, default 1, 2, 3;
      one band is replicated to grey), not the TIFF's photometric tag; a 4th band (alpha or NIR)
      is not read, but GDAL's mask (alpha, nodata value, internal mask) blacks out invalid pixels;
    * JPEG through OpenCV (how the datasets' JPEGs were always decoded);
    * 8-bit data as they are; deeper data through a percentile stretch (``stretch``, default one
      2-98 % range shared by all bands).

    A truncated or corrupt file, and a file that is no image, are errors naming the file and the
    sample.

    Required Keys:

    - img_path
    - sample_id (optional, for error messages)

    Added Keys:

    - img (np.uint8, (H, W, 3), BGR)
    - img_shape
    - ori_shape
    - stretch (:class:`btdnet.utils.Stretch`, the stretch applied)

    Args:
        to_float32 (bool): Return a float32 image instead of uint8. Default: False.
        bands (str | Sequence[int], optional): 1-based bands read as R, G, B (or one as grey).
            Default: 1, 2, 3 (band 1 for 1- and 2-band files).
        stretch (str): ``'shared'``, ``'per-band'``, ``'none'`` or ``'MIN,MAX'`` (see
            :func:`btdnet.utils.parse_stretch`). Default ``'shared'``.
        backend_args (dict, optional): mmengine file backend arguments. Default: None.
    """

    def __init__(
        self,
        to_float32: bool = False,
        bands=None,
        stretch: str = 'shared',
        backend_args: dict | None = None,
    ):
        self.to_float32 = to_float32
        self.bands = parse_bands(bands)
        parse_stretch(stretch)  # a bad value fails when the pipeline is built
        self.stretch = stretch
        self.backend_args = backend_args.copy() if backend_args else None

    def transform(self, results: dict) -> dict:
        path = results['img_path']
        sample_id = results.get('sample_id')
        content = None  # a local file is read by GDAL where it is
        if self.backend_args is not None or '://' in str(path):
            content = _read_bytes(path, 'image', sample_id, self.backend_args)
        elif not osp.exists(path):
            raise FileNotFoundError(
                f'Expected the image of sample_id {sample_id} at {path}, found no such file'
            )
        try:
            image = read_image_file(path, self.bands, self.stretch, content=content)
        except ValueError as err:
            if sample_id is None:
                raise
            raise type(err)(f'{err} (sample_id {sample_id})') from None
        img = image.bgr.astype(np.float32) if self.to_float32 else image.bgr
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        results['stretch'] = image.stretch
        return results

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(to_float32={self.to_float32}, bands={self.bands}, '
            f'stretch={self.stretch!r}, backend_args={self.backend_args})'
        )


@TRANSFORMS.register_module()
class LoadReferringMask(BaseTransform):
    """Decode the referred object's mask as a 0/1 ``gt_seg_map``.

    The mask source is either ``mask_rle`` (RRSIS-D: one compressed COCO RLE) or ``seg_map_path``
    (RefSegRS: a mask image; foreground is ``value > threshold``). A mask of another size than the
    original image (RRSIS-D's 800x801 JPEGs with 800x800 masks) is resized to ``ori_shape`` with
    nearest neighbour; the dataset reports how many samples that affects. An empty mask is kept
    (the target of a ``no_target`` sample is empty by definition) and not logged here: the loaders
    count empty masks once per dataset (RRSIS-D, gRefCOCO at start-up; RefSegRS's mask files are
    counted by ``tools/analysis_tools/check_dataset.py``).

    Put it before ``Resize`` for training (the mask is resized with the image) and after it for
    testing (the ground truth keeps the original size, as in mmseg).

    Required Keys:

    - mask_rle or seg_map_path
    - ori_shape (the loaded image's size)
    - sample_id (optional, for messages)

    Modified Keys:

    - seg_fields (``'gt_seg_map'`` appended)

    Added Keys:

    - gt_seg_map (np.uint8, (H, W), values 0/1, H x W = ori_shape)

    Args:
        threshold (int): Mask images: foreground is ``value > threshold``. Default: 50
            (RefSegRS's convention).
        backend_args (dict, optional): mmengine file backend arguments. Default: None.
    """

    def __init__(self, threshold: int = 50, backend_args: dict | None = None):
        self.threshold = threshold
        self.backend_args = backend_args.copy() if backend_args else None

    def _decode_file(self, path: str, sample_id) -> np.ndarray:
        content = _read_bytes(path, 'mask', sample_id, self.backend_args)
        mask = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)
        if mask is None:
            raise ValueError(
                f'{path} (sample_id {sample_id}): expected a mask image OpenCV can '
                f'decode, found {len(content)} unreadable bytes'
            )
        if mask.ndim == 3:  # a mask saved with colour channels: read its first band
            mask = mask[..., 0]
        return (mask > self.threshold).view(np.uint8)

    def transform(self, results: dict) -> dict:
        sample_id = results.get('sample_id')
        if 'mask_rle' in results:
            mask = decode_rle(results['mask_rle'])
        elif results.get('seg_map_path'):
            mask = self._decode_file(results['seg_map_path'], sample_id)
        else:
            raise KeyError(
                f'sample_id {sample_id}: expected a mask source (`mask_rle` or '
                f'`seg_map_path`), found keys {sorted(results)}'
            )
        height, width = results['ori_shape'][:2]
        if mask.shape != (height, width):
            mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
        results['gt_seg_map'] = mask
        seg_fields = results.setdefault('seg_fields', [])
        if 'gt_seg_map' not in seg_fields:
            seg_fields.append('gt_seg_map')
        return results

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(threshold={self.threshold}, backend_args={self.backend_args})'
        )
