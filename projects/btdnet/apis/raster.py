"""Georeferenced rasters for whole-scene inference: windowed reading with one contrast stretch,
and GeoTIFF / Cloud-Optimized GeoTIFF writing (rasterio, i.e. GDAL).

.. code:: python

    with RasterScene('scene.tif', bands=(1, 2, 3), nodata=0) as scene:
        bgr, valid = scene.read_rows(0, 512)      # uint8 (512, W, 3) BGR, bool (512, W)
    write_mask_geotiff('mask.tif', mask, crs=scene.crs, transform=scene.transform)

A scene is never read whole: rows come by windows, the stretch percentiles from a decimated read.
"""

import math
import os
import os.path as osp
from collections.abc import Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

# Percentiles of the whole-scene contrast stretch (per band, from a decimated read).
STRETCH_PERCENTILES = (2.0, 98.0)
# Longest side of the decimated read that gives the stretch (and the quicklook).
SAMPLE_SIDE = 1024
MASK_NODATA = 255
GEOTIFF_BLOCK = 512


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


class RasterScene:
    """A georeferenced raster opened for inference, read by windows.

    Args:
        path (str): Raster file (anything GDAL reads; GeoTIFF above all).
        bands (Sequence[int], optional): 1-based bands taken as (R, G, B), or one band taken as
            grey. Default: 1, 2, 3, or band 1 as grey when the file has fewer than 3 bands.
        nodata (float, optional): Nodata value; default the file's. A pixel is nodata when every
            selected band holds it (NaN always counts as nodata in float rasters).
        scale (float): Resampling factor before tiling (``2.0`` doubles the pixels along each
            axis): the rows read are on this working grid. Default 1.0.

    Raises:
        FileNotFoundError: No such file.
        IsADirectoryError: ``path`` is a folder.
        ValueError: Not a raster, a truncated or corrupt file, fewer bands than asked for, or a
            non-positive scale; each message names the file.
    """

    def __init__(
        self,
        path: str,
        bands: Sequence[int] | None = None,
        nodata: float | None = None,
        scale: float = 1.0,
    ) -> None:
        self.path = str(path)
        if osp.isdir(self.path):
            raise IsADirectoryError(f'{self.path}: expected a raster file, found a folder')
        if not osp.isfile(self.path):
            raise FileNotFoundError(f'{self.path}: no such raster file')
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f'--scale: expected a positive factor, found {scale!r}')
        try:
            self.src = rasterio.open(self.path)
        except RasterioError as err:
            raise ValueError(
                f'{self.path}: not a raster GDAL can read (is it an image file?): {err}'
            ) from None
        try:
            self._setup(parse_bands(bands), nodata, float(scale))
        except Exception:
            self.src.close()
            raise

    def _setup(self, bands, nodata, scale) -> None:
        src = self.src
        if bands is None:
            bands = (1, 2, 3) if src.count >= 3 else (1,)
        if max(bands) > src.count:
            raise ValueError(
                f'{self.path} has {src.count} band(s), but --bands asks for band {max(bands)} '
                f'(bands {",".join(map(str, bands))})'
            )
        self.bands = tuple(bands)
        self.dtype = np.dtype(src.dtypes[self.bands[0] - 1])
        self.nodata = src.nodata if nodata is None else float(nodata)
        self.height, self.width = src.height, src.width
        self.scale = scale
        self.work_height = max(1, int(round(self.height * scale)))
        self.work_width = max(1, int(round(self.width * scale)))
        self._check_readable()
        self.stretch = None  # (low, high) per band, from fit_stretch
        self._reader = src
        if (self.work_height, self.work_width) != (self.height, self.width):
            work_transform = src.transform @ Affine.scale(
                self.width / self.work_width, self.height / self.work_height
            )
            self._reader = WarpedVRT(
                src,
                width=self.work_width,
                height=self.work_height,
                transform=work_transform,
                resampling=Resampling.bilinear if scale >= 1 else Resampling.average,
                src_nodata=self.nodata,
                nodata=self.nodata,
            )

    def _check_readable(self) -> None:
        """Read the last block of every band: a truncated file fails here, before any work."""
        block_h, block_w = self.src.block_shapes[0]
        window = Window(
            ((self.width - 1) // block_w) * block_w,
            ((self.height - 1) // block_h) * block_h,
            min(block_w, self.width - ((self.width - 1) // block_w) * block_w),
            min(block_h, self.height - ((self.height - 1) // block_h) * block_h),
        )
        try:
            self.src.read(list(self.bands), window=window)
        except RasterioError as err:
            raise ValueError(
                f'{self.path}: the file is truncated or corrupt (its last block cannot be read: '
                f'{err})'
            ) from None

    # ------------------------------------------------------------------ properties
    @property
    def crs(self):
        """The scene's ``rasterio.crs.CRS``, or None."""
        return self.src.crs

    @property
    def transform(self) -> Affine:
        """Pixel -> CRS affine transform of the source grid."""
        return self.src.transform

    @property
    def work_transform(self) -> Affine:
        """Pixel -> CRS transform of the working grid (after ``scale``)."""
        return self.src.transform @ Affine.scale(
            self.width / self.work_width, self.height / self.work_height
        )

    def describe(self) -> dict:
        """The scene's identity and georeferencing, for a run summary."""
        stat = os.stat(self.path)
        return dict(
            path=osp.abspath(self.path),
            size_bytes=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            height=self.height,
            width=self.width,
            count=self.src.count,
            dtype=str(self.dtype),
            bands=list(self.bands),
            nodata=None if self.nodata is None else float(self.nodata),
            crs=self.crs.to_string() if self.crs else None,
            transform=list(self.transform)[:6],
        )

    # ------------------------------------------------------------------ reading
    def _read(self, reader, window=None, out_shape=None, resampling=Resampling.nearest):
        try:
            return reader.read(
                list(self.bands), window=window, out_shape=out_shape, resampling=resampling
            )
        except RasterioError as err:
            where = f'rows {window.row_off}-{window.row_off + window.height}' if window else 'it'
            raise ValueError(
                f'{self.path}: reading {where} failed; the file is truncated or corrupt ({err})'
            ) from None

    def _valid(self, data: np.ndarray) -> np.ndarray:
        """bool (h, w): not every band is nodata (or NaN)."""
        invalid = np.ones(data.shape[1:], bool)
        for band in data:
            bad = np.zeros(band.shape, bool)
            if self.nodata is not None and not math.isnan(self.nodata):
                bad |= band == self.dtype.type(self.nodata)
            if band.dtype.kind == 'f':
                bad |= np.isnan(band)
            invalid &= bad
        return ~invalid

    def sample(self, max_side: int = SAMPLE_SIDE) -> tuple[np.ndarray, np.ndarray]:
        """A decimated read of the whole scene (nearest neighbour, longest side ``max_side``).

        Returns:
            tuple: data in the file's dtype (C, h, w) and its valid mask (h, w).
        """
        factor = max(self.height, self.width) / max_side
        shape = (
            len(self.bands),
            max(1, round(self.height / max(factor, 1))),
            max(1, round(self.width / max(factor, 1))),
        )
        data = self._read(self.src, out_shape=shape)
        return data, self._valid(data)

    def fit_stretch(self, sample: np.ndarray, valid: np.ndarray) -> None:
        """Set the whole-scene stretch from a decimated read: per band, the 2nd and 98th
        percentiles of the valid pixels map to 0 and 255. uint8 scenes pass unchanged."""
        if self.dtype == np.uint8:
            self.stretch = None
            return
        low, high = [], []
        for band in sample:
            values = band[valid]
            values = values[np.isfinite(values)] if values.dtype.kind == 'f' else values
            if values.size == 0:
                lo, hi = (0.0, 1.0) if self.dtype.kind == 'f' else (0.0, 255.0)
            else:
                lo, hi = (float(v) for v in np.percentile(values, STRETCH_PERCENTILES))
            low.append(lo)
            high.append(hi if hi > lo else lo + 1.0)
        self.stretch = (low, high)

    def to_bgr(self, data: np.ndarray) -> np.ndarray:
        """(C, h, w) raw bands -> uint8 (h, w, 3) BGR through the scene's stretch."""
        if self.stretch is None and data.dtype != np.uint8:
            raise RuntimeError('call fit_stretch before reading a non-uint8 scene')
        bands = []
        for c, band in enumerate(data):
            if self.stretch is None:
                bands.append(band)
                continue
            lo, hi = self.stretch[0][c], self.stretch[1][c]
            if band.dtype.kind in 'ui' and band.dtype.itemsize <= 2:
                # A lookup table over the dtype's range: no float copy of the rows.
                info = np.iinfo(band.dtype)
                levels = np.arange(info.min, info.max + 1, dtype=np.float64)
                lut = np.clip((levels - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)
                bands.append(lut[band.astype(np.int64) - info.min] if info.min else lut[band])
            else:
                scaled = (band.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
                scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
                bands.append(np.clip(scaled + 0.5, 0, 255).astype(np.uint8))
        if len(bands) == 1:
            bands = bands * 3
        # Bands are R, G, B; the predictor takes BGR.
        return np.ascontiguousarray(np.stack(bands[::-1], axis=-1))

    def read_rows(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Working-grid rows [y0, y1): uint8 (n, W, 3) BGR (nodata pixels black) and their bool
        (n, W) valid mask (None when the scene has no nodata)."""
        window = Window(0, y0, self.work_width, y1 - y0)
        data = self._read(self._reader, window=window)
        valid = self._valid(data)
        bgr = self.to_bgr(data)
        if self.nodata is None and self.dtype.kind != 'f':
            return bgr, None
        bgr[~valid] = 0
        return bgr, valid

    def read_valid(self, y0: int, y1: int) -> np.ndarray:
        """Source-grid rows [y0, y1): bool (n, W) valid mask."""
        if self.nodata is None and self.dtype.kind != 'f':
            return np.ones((y1 - y0, self.width), bool)
        return self._valid(self._read(self.src, window=Window(0, y0, self.width, y1 - y0)))

    def read_overview(self, shape: tuple[int, int]) -> np.ndarray:
        """The whole scene resized to ``shape`` (h, w) (GDAL's average), uint8 BGR."""
        data = self._read(
            self.src, out_shape=(len(self.bands), *shape), resampling=Resampling.average
        )
        bgr = self.to_bgr(data)
        bgr[~self._valid(data)] = 0
        return bgr

    def close(self) -> None:
        if self._reader is not self.src:
            self._reader.close()
        self.src.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------- writing


class GeoTiffWriter:
    """A single-band GeoTIFF written by row windows: tiled 512 x 512, deflate.

    With ``cog=True`` the rows go to a temporary tiled GeoTIFF beside ``path``, and
    :meth:`close` turns it into a Cloud-Optimized GeoTIFF with overviews (GDAL's COG driver).

    Args:
        path (str): Output file.
        height (int): Rows.
        width (int): Columns.
        dtype: ``'uint8'`` or ``'float32'``.
        nodata (float): Nodata value written in the file.
        crs: CRS (None for none).
        transform (Affine): Pixel -> CRS transform.
        cog (bool): Write a Cloud-Optimized GeoTIFF. Default False.
        resampling (str): COG overview resampling (``'nearest'`` for masks, ``'average'`` for
            scores). Default ``'nearest'``.
    """

    def __init__(
        self,
        path: str,
        height: int,
        width: int,
        dtype,
        nodata: float,
        crs,
        transform: Affine,
        cog: bool = False,
        resampling: str = 'nearest',
    ) -> None:
        self.path, self.cog, self.resampling = str(path), cog, resampling
        self._target = self.path + '.tiled.tif' if cog else self.path
        dtype = np.dtype(dtype)
        profile = dict(
            driver='GTiff',
            height=height,
            width=width,
            count=1,
            dtype=dtype.name,
            nodata=nodata,
            crs=crs,
            transform=transform,
            tiled=True,
            blockxsize=GEOTIFF_BLOCK,
            blockysize=GEOTIFF_BLOCK,
            compress='deflate',
            predictor=3 if dtype.kind == 'f' else 2,
        )
        if height < GEOTIFF_BLOCK or width < GEOTIFF_BLOCK:
            # GDAL's tiles must be multiples of 16; small rasters get one 16-aligned tile.
            profile.update(
                blockxsize=max(16, -(-min(width, GEOTIFF_BLOCK) // 16) * 16),
                blockysize=max(16, -(-min(height, GEOTIFF_BLOCK) // 16) * 16),
            )
        self.dataset = rasterio.open(self._target, 'w', **profile)

    def write(self, y0: int, rows: np.ndarray) -> None:
        """Write rows (n, W) starting at row ``y0``."""
        window = Window(0, y0, rows.shape[1], rows.shape[0])
        self.dataset.write(rows[None], window=window)

    def close(self) -> None:
        self.dataset.close()
        if self.cog:
            from rasterio.shutil import copy as gdal_copy

            gdal_copy(
                self._target,
                self.path,
                driver='COG',
                COMPRESS='DEFLATE',
                BLOCKSIZE=GEOTIFF_BLOCK,
                OVERVIEW_RESAMPLING=self.resampling.upper(),
                PREDICTOR='YES',
            )
            os.remove(self._target)


def write_mask_geotiff(
    path: str,
    mask: np.ndarray,
    *,
    crs=None,
    transform: Affine | None = None,
    nodata: int = MASK_NODATA,
    cog: bool = False,
) -> str:
    """Write a whole mask held in memory as a georeferenced GeoTIFF (what the scene inferencer
    writes row by row): uint8, 1 = target, 0 = background, 255 = nodata; tiled 512 x 512,
    deflate; a Cloud-Optimized GeoTIFF with overviews with ``cog=True``.

    Args:
        path (str): Output file.
        mask (np.ndarray): (H, W) uint8 / bool / int (0, 1, or ``nodata``).
        crs: The CRS (``rasterio.crs.CRS``, an EPSG string, ...); None for none.
        transform (Affine, optional): Pixel -> CRS transform; default the identity.
        nodata (int): Nodata value. Default 255.
        cog (bool): Cloud-Optimized GeoTIFF with overviews. Default False.

    Returns:
        str: ``path``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or 0 in mask.shape:
        raise ValueError(f'write_mask_geotiff: expected an (H, W) mask, found {mask.shape}')
    writer = GeoTiffWriter(
        path,
        mask.shape[0],
        mask.shape[1],
        np.uint8,
        nodata,
        crs,
        transform if transform is not None else Affine.identity(),
        cog=cog,
    )
    try:
        writer.write(0, mask.astype(np.uint8))
    finally:
        writer.close()
    return str(path)
