"""Reading an image file as the model sees it: 3-channel uint8 BGR, whatever its depth and bands.

Every entry point reads files through here (``LoadRSImageFromFile``, hence ``inference_model``,
``read_image``, ``tools/infer.py``, the app and the ONNX path; ``RasterScene`` shares the stretch
and the sample for whole scenes), so one file gives one answer:

.. code:: python

    image = read_image_file('scene_uint16.tif', bands=(1, 2, 3), stretch='shared')
    image.bgr       # (H, W, 3) uint8, nodata pixels black
    image.valid     # (H, W) bool from GDAL's mask (nodata value, alpha, internal mask) or None
    str(image.stretch)   # 'shared 2-98 % stretch: 532-2100'

* Files are read by GDAL (rasterio), so band order follows the bands, not the TIFF's photometric
  tag (OpenCV reads a 3-band MINISBLACK GeoTIFF as grey). JPEGs are decoded by OpenCV, as the
  training data were (GDAL's JPEG driver upsamples chroma otherwise: up to 66 levels apart at
  colour edges); OpenCV also takes what GDAL cannot open.
* 8-bit data pass as they are. Deeper data get a percentile stretch from a decimated sample of
  the valid pixels: by default one 2-98 % range **shared by all bands**, so that colours keep
  their balance (a per-band stretch turns a reddish scene grey and moves colour words);
  ``'per-band'`` on request, ``'MIN,MAX'`` by hand, ``'none'`` to clip the values to 0-255.
"""

from __future__ import annotations

import contextlib
import math
import os.path as osp
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

STRETCH_PERCENTILES = (2.0, 98.0)
STRETCH_MODES = ('shared', 'per-band', 'none')
# The command lines' help texts (tools/infer.py, tools/infer_scene.py, tools/app.py).
STRETCH_HELP = (
    'how data deeper than 8 bits become 8 bits: shared (default; one 2-98 %% range for all '
    'bands, so colours keep their balance), per-band, none (values clipped to 0-255), or MIN,MAX '
    '(the values that map to 0 and 255, e.g. 0,4095 for 12-bit data)'
)
BANDS_HELP = 'bands read as R,G,B (or one as grey), from 1; default 1,2,3 (1 for 1-2 bands)'
# Longest side of the decimated sample the stretch is fitted on.
SAMPLE_SIDE = 1024


def parse_bands(bands: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``'1,2,3'`` or ``(1, 2, 3)`` -> (1, 2, 3); one band (grey) or three (R, G, B), 1-based."""
    if bands is None:
        return None
    if isinstance(bands, str):
        try:
            bands = [int(b) for b in bands.replace(' ', '').split(',') if b]
        except ValueError:
            raise ValueError(
                f'--bands: expected band numbers such as 1,2,3, found {bands!r}'
            ) from None
    bands = tuple(int(b) for b in bands)
    if len(bands) not in (1, 3) or min(bands) < 1:
        raise ValueError(
            f'--bands: expected one band (grey) or three (R,G,B), numbered from 1, found {bands}'
        )
    return bands


def default_bands(count: int) -> tuple[int, ...]:
    """Bands 1, 2, 3 as R, G, B; band 1 as grey for 1- and 2-band files."""
    return (1, 2, 3) if count >= 3 else (1,)


@dataclass
class Stretch:
    """How raw band values become 0-255, and, once fitted, the range of each band.

    Args:
        mode (str): ``'shared'`` (one 2-98 % range for all bands), ``'per-band'``, ``'fixed'``
            (``low`` / ``high`` given by hand) or ``'none'`` (values clipped to 0-255).
        low (tuple[float, ...]): Per band, the value that maps to 0 (one value for all bands
            before fitting a fixed stretch).
        high (tuple[float, ...]): Per band, the value that maps to 255.
    """

    mode: str = 'shared'
    low: tuple = ()
    high: tuple = ()
    _luts: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def fitted(self) -> bool:
        return self.mode == 'none' or bool(self.low)

    def __str__(self) -> str:
        if self.mode == 'none':
            return 'no stretch (values as read, clipped to 0-255)'
        ranges = [f'{lo:g}-{hi:g}' for lo, hi in zip(self.low, self.high)]
        if self.mode == 'fixed':
            return f'fixed stretch {ranges[0]}'
        pct = '{:g}-{:g} %'.format(*STRETCH_PERCENTILES)
        if self.mode == 'shared':
            return f'shared {pct} stretch: {ranges[0] if ranges else "not fitted"}'
        return f'per-band {pct} stretch: {", ".join(ranges) or "not fitted"}'

    def to_dict(self) -> dict:
        """For a run summary (JSON)."""
        return dict(
            mode=self.mode,
            percentiles=list(STRETCH_PERCENTILES) if self.mode in ('shared', 'per-band') else None,
            low=list(self.low),
            high=list(self.high),
        )

    def band_to_uint8(self, index: int, band: np.ndarray) -> np.ndarray:
        """One band (h, w) -> uint8 (h, w): ``(value - low) * 255 / (high - low)``, rounded and
        clipped (a lookup table for 8- and 16-bit integers: no float copy of the band)."""
        if self.mode == 'none':
            if band.dtype == np.uint8:
                return band
            return np.clip(np.nan_to_num(band, nan=0.0), 0, 255).astype(np.uint8)
        if not self.fitted:
            raise RuntimeError('fit the stretch (fit_stretch) before converting bands with it')
        lo, hi = float(self.low[index]), float(self.high[index])
        if band.dtype.kind in 'ui' and band.dtype.itemsize <= 2:
            lut = self._luts.get(index)
            if lut is None:
                info = np.iinfo(band.dtype)
                levels = np.arange(info.min, info.max + 1, dtype=np.float64)
                lut = np.clip((levels - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)
                self._luts[index] = lut
            offset = np.iinfo(band.dtype).min
            return lut[band.astype(np.int32) - offset] if offset else lut[band]
        scaled = (band.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
        return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def parse_stretch(spec: str | Stretch | None) -> Stretch:
    """``'shared'`` (default, also for None), ``'per-band'``, ``'none'`` or ``'MIN,MAX'``
    (values of the file that map to 0 and 255) -> an unfitted :class:`Stretch`."""
    if isinstance(spec, Stretch):
        return spec
    spec = 'shared' if spec is None else str(spec).strip().lower()
    if spec in STRETCH_MODES:
        return Stretch(spec)
    try:
        low, high = (float(v) for v in spec.split(','))
    except ValueError:
        raise ValueError(
            f'--stretch: expected shared, per-band, none or MIN,MAX (e.g. 0,4095), found {spec!r}'
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        raise ValueError(f'--stretch: expected MIN < MAX, both finite, found {spec!r}')
    return Stretch('fixed', (low,), (high,))


def sample_grid(height: int, width: int, max_side: int = SAMPLE_SIDE):
    """Rows and columns of the decimated sample: nearest pixel centres, at most ``max_side``
    along each axis (the image's own size when smaller)."""
    factor = max(1.0, max(height, width) / max_side)
    sh, sw = max(1, round(height / factor)), max(1, round(width / factor))
    rows = np.minimum(((np.arange(sh) + 0.5) * height / sh).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(sw) + 0.5) * width / sw).astype(np.int64), width - 1)
    return rows, cols


def fit_stretch(
    spec: str | Stretch | None, sample: np.ndarray, valid: np.ndarray | None = None
) -> Stretch:
    """Fit a stretch to a decimated sample of the bands.

    Args:
        spec: See :func:`parse_stretch`.
        sample (np.ndarray): (C, h, w) raw values of the selected bands.
        valid (np.ndarray, optional): (h, w) bool; None for all pixels.

    Returns:
        Stretch: 8-bit samples give ``'none'`` unless a fixed range was asked for; ``'shared'``
        the 2nd and 98th percentiles of all bands' valid values together, ``'per-band'`` each
        band's own; ``'fixed'`` its range for every band.
    """
    stretch = parse_stretch(spec)
    count = len(sample)
    if stretch.mode == 'fixed':
        return Stretch('fixed', stretch.low[:1] * count, stretch.high[:1] * count)
    if stretch.mode == 'none' or sample.dtype == np.uint8:
        return Stretch('none')
    values = sample[:, valid] if valid is not None else sample.reshape(count, -1)
    if values.dtype.kind == 'f':
        values = np.where(np.isfinite(values), values, np.nan)
    groups = [values] if stretch.mode == 'shared' else list(values)
    low, high = [], []
    for group in groups:
        group = group[~np.isnan(group)] if group.dtype.kind == 'f' else group.ravel()
        if group.size == 0:
            lo, hi = (0.0, 1.0) if sample.dtype.kind == 'f' else (0.0, 255.0)
        else:
            lo, hi = (float(v) for v in np.percentile(group, STRETCH_PERCENTILES))
        low.append(lo)
        high.append(hi if hi > lo else lo + 1.0)
    if stretch.mode == 'shared':
        low, high = low * count, high * count
    return Stretch(stretch.mode, tuple(low), tuple(high))


def bands_to_bgr(data: np.ndarray, stretch: Stretch) -> np.ndarray:
    """(C, h, w) raw R, G, B bands (or one grey band) -> uint8 (h, w, 3) BGR through a fitted
    stretch."""
    out = np.empty((*data.shape[1:], 3), np.uint8)
    for c, band in enumerate(data):
        converted = stretch.band_to_uint8(c, band)
        if len(data) == 1:
            out[...] = converted[..., None]
        else:
            out[..., 2 - c] = converted
    return out


def array_to_bgr(image: np.ndarray, stretch: str | Stretch | None = 'shared'):
    """An image array in BGR order -> (uint8 (H, W, 3) BGR, the fitted :class:`Stretch`).

    Grey (H, W) or (H, W, 1) is replicated to 3 channels, a 4th channel dropped, bool taken as
    0 / 255; other dtypes than uint8 go through ``stretch`` as files of that depth do.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or 0 in image.shape[:2]:
        raise ValueError(
            'expected an image array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), '
            f'found {image.shape}'
        )
    if image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    elif not (np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.integer)):
        raise TypeError(f'expected a numeric image array, found dtype {image.dtype}')
    channels = image[..., :1] if image.shape[2] == 1 else image[..., 2::-1]  # grey, or R, G, B
    bands = np.ascontiguousarray(channels.transpose(2, 0, 1))
    rows, cols = sample_grid(*bands.shape[1:])
    fitted = fit_stretch(stretch, bands[:, rows][:, :, cols])
    bgr = bands_to_bgr(bands, fitted)
    fitted._luts.clear()  # the result keeps the stretch, not its 64 K-entry tables
    return bgr, fitted


@dataclass
class ImageData:
    """An image file as the model reads it.

    Attributes:
        bgr (np.ndarray): (H, W, 3) uint8 BGR; pixels outside ``valid`` are black.
        valid (np.ndarray | None): (H, W) bool, GDAL's mask of valid pixels; None when every
            pixel is valid.
        stretch (Stretch): The fitted stretch (``'none'`` for 8-bit data).
        bands (tuple[int, ...]): The 1-based bands read as R, G, B (or grey); () for files
            OpenCV decoded.
        dtype (str): The file's sample type (``'uint16'``, ...).
    """

    bgr: np.ndarray
    valid: np.ndarray | None
    stretch: Stretch
    bands: tuple
    dtype: str


class CorruptImageError(ValueError):
    """A file that is an image of a known format but cannot be decoded to its end."""


# Magic numbers of the formats GDAL always reads: a file of one of them that GDAL cannot open is
# damaged, and OpenCV would not read it either.
_SIGNATURES = {
    b'II*\x00': 'TIFF',
    b'MM\x00*': 'TIFF',
    b'II+\x00': 'BigTIFF',
    b'MM\x00+': 'BigTIFF',
    b'\x89PNG': 'PNG',
}
_PNG_END = b'IEND\xaeB`\x82'


def _is_jpeg(content: bytes) -> bool:
    return content[:2] == b'\xff\xd8'


def _known_format(content: bytes) -> str | None:
    return _SIGNATURES.get(content[:4])


def _decode_with_opencv(path: str, content: bytes, bands, stretch) -> ImageData:
    """JPEGs (as the training data were decoded), and files GDAL cannot open."""
    if _is_jpeg(content) and b'\xff\xd9' not in content[-64:]:
        raise CorruptImageError(
            f'{path}: the JPEG is truncated (no end-of-image marker): the file was cut short'
        )
    if bands not in (None, (1, 2, 3)):
        raise ValueError(f'{path}: --bands {bands} needs a file GDAL reads; this one it cannot')
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)  # its decoders print; our message says it
    try:
        img = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_COLOR)
    finally:
        logging.setLogLevel(level)
    if img is None:
        raise ValueError(
            f'{path}: expected an image file, found {len(content)} bytes that neither GDAL '
            'nor OpenCV decodes (not an image, or a corrupt one)'
        )
    fitted = fit_stretch(stretch, img.transpose(2, 0, 1)[::-1])
    if fitted.mode != 'none':
        img = bands_to_bgr(np.ascontiguousarray(img.transpose(2, 0, 1)[::-1]), fitted)
    return ImageData(img, None, fitted, (), 'uint8')


def mask_source(src, bands: Sequence[int]) -> str | None:
    """Where GDAL's mask of the bands read comes from: ``'alpha'`` (an alpha band), ``'mask'``
    (an internal or sidecar mask), ``'nodata'`` (a nodata value), or None (every pixel valid).

    An alpha band that ``bands`` reads as a colour (GDAL calls the 4th band of a 4-band 8-bit
    GeoTIFF alpha by default, NIR or not) is data, not a mask: None then.
    """
    from rasterio.enums import ColorInterp, MaskFlags

    flags = [set(src.mask_flag_enums[b - 1]) for b in bands]
    if any(MaskFlags.alpha in f for f in flags):
        reads_alpha = any(src.colorinterp[b - 1] == ColorInterp.alpha for b in bands)
        return None if reads_alpha else 'alpha'
    if any(MaskFlags.per_dataset in f for f in flags):
        return 'mask'
    if any(MaskFlags.nodata in f for f in flags):
        return 'nodata'
    return None


def _gdal_valid(src, bands) -> np.ndarray | None:
    """GDAL's mask of the bands read (:func:`mask_source`), or None when every pixel is valid."""
    if mask_source(src, bands) is None:
        return None
    # Per band with a nodata value: a pixel is nodata when every band read holds it.
    valid = src.read_masks(list(bands)).any(axis=0)
    return None if valid.all() else valid


def _ends(path: str, content: bytes | None) -> tuple[bytes, bytes]:
    """The first 16 and last 64 bytes of the file (signature, end marker); checks the path."""
    if content is not None:
        return content[:16], content[-64:]
    if osp.isdir(path):
        raise IsADirectoryError(f'{path}: expected an image file, found a folder')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: expected an image file, found no such file')
    with open(path, 'rb') as f:
        head = f.read(16)
        f.seek(max(0, osp.getsize(path) - 64))
        return head, f.read()


def _read_all(path: str) -> bytes:
    with open(path, 'rb') as f:
        return f.read()


def _expand_palette(indices: np.ndarray, colormap: dict) -> np.ndarray:
    """A palette band (h, w) -> (3, h, w) R, G, B uint8."""
    table = np.zeros((256, 3), np.uint8)
    for index, rgba in colormap.items():
        if 0 <= index < 256:
            table[index] = rgba[:3]
    return np.ascontiguousarray(table[indices].transpose(2, 0, 1))


def read_image_file(
    path: str,
    bands: str | Sequence[int] | None = None,
    stretch: str | Stretch | None = 'shared',
    content: bytes | None = None,
) -> ImageData:
    """Read an image file as the model reads it (see the module's docstring).

    Args:
        path (str): Image file (named in errors; read unless ``content`` is given).
        bands (str | Sequence[int], optional): 1-based bands taken as R, G, B, or one as grey.
            Default :func:`default_bands` of the file (a 4th band, alpha or NIR, is not read).
        stretch: See :func:`parse_stretch`. Default ``'shared'``.
        content (bytes, optional): The file's bytes, when they come from elsewhere (mmengine
            file backends).

    Returns:
        ImageData: The 8-bit BGR image, its valid pixels and the stretch applied.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not an image, fewer bands than ``bands`` asks for, or a bad ``stretch``.
        CorruptImageError: The file is truncated or corrupt.
    """
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    path = str(path)
    bands = parse_bands(bands)
    stretch = parse_stretch(stretch)
    head, tail = _ends(path, content)
    if _is_jpeg(head):
        return _decode_with_opencv(path, content or _read_all(path), bands, stretch)
    known = _known_format(head)
    if known == 'PNG' and not tail.rstrip(b'\x00').endswith(_PNG_END):
        # GDAL's PNG driver returns the rows it could decode without an error.
        raise CorruptImageError(f'{path}: the PNG is truncated (no IEND chunk at its end)')
    # A local file is opened where it is (no copy of it in memory); bytes through a MemoryFile.
    memfile = contextlib.nullcontext() if content is None else rasterio.MemoryFile(content)
    with warnings.catch_warnings():
        # An image without georeferencing is the normal case here, not a problem to report.
        warnings.simplefilter('ignore', NotGeoreferencedWarning)
        try:
            src = rasterio.open(path) if content is None else memfile.open()
        except RasterioError as err:
            if content is not None:
                memfile.close()
            if known:
                reason = str(err).replace(
                    osp.basename(getattr(memfile, 'name', path)), osp.basename(path)
                )
                raise CorruptImageError(
                    f'{path}: the {known} file is truncated or corrupt (GDAL: {reason})'
                ) from None
            return _decode_with_opencv(path, content or _read_all(path), bands, stretch)
        with memfile, src:
            bands = bands or default_bands(src.count)
            if max(bands) > src.count:
                raise ValueError(
                    f'{path} has {src.count} band(s), but --bands asks for band {max(bands)}'
                )
            try:
                data = src.read(list(bands))
                valid = _gdal_valid(src, bands)
                if src.colorinterp[bands[0] - 1] == ColorInterp.palette:
                    data = _expand_palette(data[0], src.colormap(bands[0]))
            except RasterioError as err:
                raise CorruptImageError(
                    f'{path}: the {src.driver} file is truncated or corrupt (GDAL: {err})'
                ) from None
    rows, cols = sample_grid(*data.shape[1:])
    sample = data[:, rows][:, :, cols]
    fitted = fit_stretch(stretch, sample, None if valid is None else valid[rows][:, cols])
    bgr = bands_to_bgr(data, fitted)
    fitted._luts.clear()  # the result keeps the stretch, not its 64 K-entry tables
    if valid is not None:
        bgr *= valid[..., None]
    return ImageData(bgr, valid, fitted, bands, str(data.dtype))
