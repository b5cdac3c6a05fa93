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
import warnings
from collections.abc import Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ..utils.image_file import (
    SAMPLE_SIDE,
    Stretch,
    bands_to_bgr,
    default_bands,
    fit_stretch,
    mask_source,
    parse_bands,
    parse_stretch,
    sample_grid,
)

MASK_NODATA = 255
GEOTIFF_BLOCK = 512
# read_rows reads the file in chunks of at least this many rows (whole block rows) and columns
# (whole blocks): each block is decoded once, and the raw chunk stays small.
ROW_CHUNK = 256
COLUMN_CHUNK = 2048


def _open_quietly(path: str):
    """``rasterio.open`` without its NotGeoreferencedWarning: a scene without georeferencing
    is reported by the scene tool in its own words (outputs in pixel coordinates)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', NotGeoreferencedWarning)
        return rasterio.open(path)


class RasterScene:
    """A georeferenced raster opened for inference, read by windows.

    Args:
        path (str): Raster file (anything GDAL reads; GeoTIFF above all).
        bands (Sequence[int], optional): 1-based bands taken as (R, G, B), or one band taken as
            grey. Default: 1, 2, 3, or band 1 as grey when the file has fewer than 3 bands.
        nodata (float, optional): Nodata value; default the file's. A pixel is nodata when every
            selected band holds it (NaN always counts as nodata in float rasters), or when
            GDAL's mask says so (an alpha band or an internal mask of the file).
        scale (float): Resampling factor before tiling (``2.0`` doubles the pixels along each
            axis): the rows read are on this working grid. Default 1.0.
        stretch (str | Stretch): How deeper-than-8-bit data become 8 bits (see
            :func:`btdnet.utils.parse_stretch`): ``'shared'`` (default; one 2-98 % range for
            all bands, as every other entry point reads files), ``'per-band'``, ``'none'`` or
            ``'MIN,MAX'``.

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
        stretch: str | Stretch = 'shared',
    ) -> None:
        self.path = str(path)
        self.stretch_spec = parse_stretch(stretch)
        if osp.isdir(self.path):
            raise IsADirectoryError(f'{self.path}: expected a raster file, found a folder')
        if not osp.isfile(self.path):
            raise FileNotFoundError(f'{self.path}: no such raster file')
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f'--scale: expected a positive factor, found {scale!r}')
        try:
            self.src = _open_quietly(self.path)
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
            bands = default_bands(src.count)
        if max(bands) > src.count:
            raise ValueError(
                f'{self.path} has {src.count} band(s), but --bands asks for band {max(bands)} '
                f'(bands {",".join(map(str, bands))})'
            )
        self.bands = tuple(bands)
        # An alpha band or an internal mask: pixels GDAL's mask marks invalid beyond nodata.
        self.gdal_mask = mask_source(src, self.bands) in ('alpha', 'mask')
        self.dtype = np.dtype(src.dtypes[self.bands[0] - 1])
        self.nodata = src.nodata if nodata is None else float(nodata)
        self.height, self.width = src.height, src.width
        self.scale = scale
        self.work_height = max(1, int(round(self.height * scale)))
        self.work_width = max(1, int(round(self.width * scale)))
        self._check_readable()
        self.stretch = None  # a fitted Stretch, from fit_stretch
        self._chunks = []  # (first row, bgr, valid) chunks kept by read_rows
        self._valid_src = None  # read_valid's own handle
        self._reader = src
        if (self.work_height, self.work_width) != (self.height, self.width):
            self._reader = WarpedVRT(
                src,
                width=self.work_width,
                height=self.work_height,
                transform=self.work_transform,
                resampling=Resampling.bilinear if scale >= 1 else Resampling.average,
                src_nodata=self.nodata,
                nodata=self.nodata,
            )
        block_h = self._reader.block_shapes[0][0]
        self._chunk_h = block_h * max(1, -(-ROW_CHUNK // block_h))

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
    def _read(self, reader, window=None):
        try:
            return reader.read(list(self.bands), window=window)
        except RasterioError as err:
            where = f'rows {window.row_off}-{window.row_off + window.height}' if window else 'it'
            raise ValueError(
                f'{self.path}: reading {where} failed; the file is truncated or corrupt ({err})'
            ) from None

    def _valid_in(self, reader, window, data: np.ndarray) -> np.ndarray:
        """bool (h, w) of a window read: :meth:`_valid` and, for files with one, GDAL's mask."""
        valid = self._valid(data)
        if self.gdal_mask:
            try:
                valid &= reader.read_masks(list(self.bands), window=window).any(axis=0)
            except RasterioError as err:
                raise ValueError(
                    f'{self.path}: reading its mask failed; the file is truncated or corrupt '
                    f'({err})'
                ) from None
        return valid

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

    def scan(
        self,
        max_side: int = SAMPLE_SIDE,
        overview_shape: tuple[int, int] | None = None,
        max_chunk_rows: int | None = None,
    ) -> dict:
        """One pass over the whole scene, in chunks of whole blocks (each decoded once; GDAL's
        own decimated reads decode a block once per sampled row when its cache is small).

        Args:
            max_side (int): Longest side of the decimated sample (nearest neighbour at pixel
                centres; the scene's own size when smaller).
            overview_shape (tuple[int, int], optional): (h, w) of a box-averaged overview of
                the valid pixels (every source pixel counts in one overview cell).
            max_chunk_rows (int, optional): Read only this many chunks of block rows, evenly
                spread (enough for the stretch's percentiles); the sample then holds only their
                rows. Ignored with ``overview_shape``. Default: every chunk.

        Returns:
            dict: ``sample`` (C, h, w) in the file's dtype and ``sample_valid`` (h, w); with
            ``overview_shape`` also ``overview`` (C, oh, ow) (the mean, in the file's dtype)
            and ``overview_valid`` (oh, ow).
        """
        height, width = self.height, self.width
        rows, cols = sample_grid(height, width, max_side)
        sample = np.zeros((len(self.bands), len(rows), len(cols)), self.dtype)
        sample_mask = np.ones((len(rows), len(cols)), bool)  # GDAL's mask at the sample
        if overview_shape is not None:
            oh, ow = overview_shape
            cell_rows = np.arange(height) * oh // height
            cell_cols = np.arange(width) * ow // width
            sums = np.zeros((len(self.bands), oh, ow), np.float64)
            counts = np.zeros((oh, ow), np.int64)
        block_h, block_w = self.src.block_shapes[0]
        chunk_h = block_h * max(1, -(-ROW_CHUNK // block_h))
        chunk_w = block_w * max(1, COLUMN_CHUNK // block_w)
        starts = np.arange(0, height, chunk_h)
        if max_chunk_rows is not None and overview_shape is None and len(starts) > max_chunk_rows:
            starts = starts[np.round(np.linspace(0, len(starts) - 1, max_chunk_rows)).astype(int)]
            kept = np.isin(rows // chunk_h * chunk_h, starts)
            rows, sample, sample_mask = rows[kept], sample[:, kept], sample_mask[kept]
        for y0 in starts.tolist():
            y1 = min(height, y0 + chunk_h)
            r0, r1 = np.searchsorted(rows, [y0, y1])
            if r0 == r1 and overview_shape is None:
                continue  # no sampled row in this chunk: not read at all
            for x0 in range(0, width, chunk_w):
                x1 = min(width, x0 + chunk_w)
                c0, c1 = np.searchsorted(cols, [x0, x1])
                if (r0 == r1 or c0 == c1) and overview_shape is None:
                    continue
                window = Window(x0, y0, x1 - x0, y1 - y0)
                data = self._read(self.src, window=window)
                at_sample = np.ix_(rows[r0:r1] - y0, cols[c0:c1] - x0)
                sample[:, r0:r1, c0:c1] = data[(slice(None), *at_sample)]
                if self.gdal_mask or overview_shape is not None:
                    valid = self._valid_in(self.src, window, data)
                    sample_mask[r0:r1, c0:c1] = valid[at_sample]
                if overview_shape is not None:
                    values = np.nan_to_num(data.astype(np.float32)) * valid
                    # Cell indices only grow along each axis: sum the runs of equal cells.
                    cr, cc = cell_rows[y0:y1], cell_cols[x0:x1]
                    starts_r = np.flatnonzero(np.r_[True, cr[1:] != cr[:-1]])
                    starts_c = np.flatnonzero(np.r_[True, cc[1:] != cc[:-1]])
                    block = np.add.reduceat(np.add.reduceat(values, starts_r, 1), starts_c, 2)
                    count = np.add.reduceat(
                        np.add.reduceat(valid.astype(np.int64), starts_r, 0), starts_c, 1
                    )
                    cells = np.ix_(cr[starts_r], cc[starts_c])
                    sums[(slice(None), *cells)] += block
                    counts[cells] += count
        out = dict(sample=sample, sample_valid=self._valid(sample) & sample_mask)
        if overview_shape is not None:
            mean = sums / np.maximum(counts, 1)
            if self.dtype.kind in 'ui':
                info = np.iinfo(self.dtype)
                mean = np.clip(np.rint(mean), info.min, info.max)
            out.update(overview=mean.astype(self.dtype), overview_valid=counts > 0)
        return out

    def sample(self, max_side: int = SAMPLE_SIDE) -> tuple[np.ndarray, np.ndarray]:
        """The decimated sample of :meth:`scan`: data (C, h, w) and its valid mask (h, w)."""
        scan = self.scan(max_side)
        return scan['sample'], scan['sample_valid']

    def fit_stretch(self, sample: np.ndarray, valid: np.ndarray) -> None:
        """Set the whole-scene stretch from a decimated read (:func:`btdnet.utils.fit_stretch`
        of the valid pixels; 8-bit scenes pass unchanged unless a fixed range was asked for)."""
        self.stretch = fit_stretch(self.stretch_spec, sample, valid)
        self._chunks = []

    def to_bgr(self, data: np.ndarray) -> np.ndarray:
        """(C, h, w) raw bands -> uint8 (h, w, 3) BGR through the scene's stretch."""
        stretch = self.stretch
        if stretch is None:
            if data.dtype != np.uint8:
                raise RuntimeError('call fit_stretch before reading a non-uint8 scene')
            stretch = Stretch('none')
        return bands_to_bgr(data, stretch)

    @property
    def has_nodata(self) -> bool:
        """Whether pixels can be nodata (a nodata value, NaN in a float raster, or GDAL's mask
        of an alpha band or an internal mask)."""
        return self.nodata is not None or self.dtype.kind == 'f' or self.gdal_mask

    def _convert(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Working-grid rows [y0, y1) read in column chunks of whole blocks, stretched, and
        their valid mask (None when the scene has no nodata)."""
        block_w = self._reader.block_shapes[0][1]
        step = block_w * max(1, COLUMN_CHUNK // block_w)
        bgr = np.empty((y1 - y0, self.work_width, 3), np.uint8)
        valid = np.empty((y1 - y0, self.work_width), bool) if self.has_nodata else None
        for x0 in range(0, self.work_width, step):
            x1 = min(self.work_width, x0 + step)
            window = Window(x0, y0, x1 - x0, y1 - y0)
            data = self._read(self._reader, window=window)
            if valid is not None:
                valid[:, x0:x1] = self._valid_in(self._reader, window, data)
            bgr[:, x0:x1] = self.to_bgr(data)
        if valid is not None:
            bgr *= valid[..., None]  # nodata black (masks index nothing: no index arrays)
        return bgr, valid

    def read_rows(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Working-grid rows [y0, y1): uint8 (n, W, 3) BGR (nodata pixels black) and their bool
        (n, W) valid mask (None when the scene has no nodata).

        Made for windows that move down the scene (tile rows): the file is read once, in
        chunks of whole block rows (so GDAL decodes each block once and needs no cache), and a
        stretched chunk is kept until a request starts below it.
        """
        chunks = [c for c in self._chunks if c[0] + len(c[1]) > y0]
        if chunks and chunks[0][0] > y0:
            chunks = []  # a window above the kept rows: start again
        self._chunks = chunks  # let the rows above y0 go before reading more
        end = chunks[-1][0] + len(chunks[-1][1]) if chunks else y0 // self._chunk_h * self._chunk_h
        while end < y1:
            stop = min(self.work_height, (end // self._chunk_h + 1) * self._chunk_h)
            chunks.append((end, *self._convert(end, stop)))
            end = stop
        self._chunks = chunks
        bgr = np.empty((y1 - y0, self.work_width, 3), np.uint8)
        valid = np.empty((y1 - y0, self.work_width), bool) if self.has_nodata else None
        for start, chunk_bgr, chunk_valid in chunks:
            a, b = max(y0, start), min(y1, start + len(chunk_bgr))
            if a < b:
                bgr[a - y0 : b - y0] = chunk_bgr[a - start : b - start]
                if valid is not None:
                    valid[a - y0 : b - y0] = chunk_valid[a - start : b - start]
        return bgr, valid

    def read_valid(self, y0: int, y1: int) -> np.ndarray:
        """Source-grid rows [y0, y1): bool (n, W) valid mask.

        Reads through a dataset handle of its own, so that it may run in another thread than
        :meth:`read_rows` (a GDAL dataset must not be used by two threads at once).
        """
        if not self.has_nodata:
            return np.ones((y1 - y0, self.width), bool)
        if self._valid_src is None:
            self._valid_src = _open_quietly(self.path)
        window = Window(0, y0, self.width, y1 - y0)
        return self._valid_in(self._valid_src, window, self._read(self._valid_src, window=window))

    def overview_bgr(self, scan: dict) -> np.ndarray:
        """The box-averaged overview of :meth:`scan` as uint8 BGR (cells without a valid pixel
        black), through the scene's stretch."""
        return self.to_bgr(scan['overview']) * scan['overview_valid'][..., None].astype(np.uint8)

    def close(self) -> None:
        if self._reader is not self.src:
            self._reader.close()
        if self._valid_src is not None:
            self._valid_src.close()
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
