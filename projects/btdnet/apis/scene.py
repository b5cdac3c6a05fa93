"""Whole-scene inference on a georeferenced raster: GeoTIFF in, georeferenced mask and polygons out.

.. code:: python

    from btdnet.apis import SceneOptions, infer_scene, init_model
    model = init_model(CONFIG, CHECKPOINT)
    summary = infer_scene(model, 'scene.tif', 'the white storage tanks', 'out/',
                          SceneOptions(mode='tiles', save_score=True))

A run has two phases, both strip by strip so that memory does not grow with the scene:

1. **tiles**: the scene is read by windows (one contrast stretch for the whole scene), tiled
   on the network input (:mod:`btdnet.apis.tiled`), and each finished strip's blended logit
   margin O_fg - O_bg is appended to an intermediate file beside the outputs
   (``<stem>.partial.f32``, float32, NaN = nodata). After every strip a state file
   (``<stem>.state.json``) records how far the run got and with which settings; a killed run
   restarted with ``resume=True`` continues after the last finished strip.
2. **outputs**: the intermediate is read back by strips of rows and written as the mask GeoTIFF
   (``<stem>_mask.tif``: 1 target, 0 background, 255 nodata, on the input's grid and CRS), the
   optional probability GeoTIFF (``<stem>_score.tif``), polygons (``<stem>.gpkg`` in the scene's
   CRS, ``<stem>.geojson`` in WGS84 longitude / latitude) and an optional quicklook picture. The
   summary (``<stem>.json``) is written last; the intermediate and the state are then removed.

A resumed run writes byte-identical mask, score, GeoPackage and GeoJSON files; the summary
differs only in its timings and in ``resumed_from_strip``.
"""

import json
import logging
import math
import os
import os.path as osp
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import cv2
import numpy as np
import rasterio
from mmengine.logging import print_log
from mmengine.utils import mkdir_or_exist
from rasterio.warp import transform as transform_points

from ..evaluation.rrsis_metric import safe_file_stem
from ..utils.image_file import parse_stretch
from .polygons import PolygonWriter, StripPolygonizer, describe_area
from .raster import (
    GEOTIFF_BLOCK,
    MASK_NODATA,
    GeoTiffWriter,
    RasterScene,
    parse_bands,
)
from .tiled import (
    BACKGROUND_MARGIN,
    DEFAULT_OVERLAP,
    TileCounts,
    TileGrid,
    as_tile_predictor,
    blend_rows,
    check_overlap,
    check_text,
    locate_region,
)

STATE_VERSION = 1
# Chunks of whole block rows the stretch's sample comes from (evenly spread over the scene),
# when neither the overview nor the quicklook needs the whole scene decimated.
STRETCH_CHUNK_ROWS = 8
# Output rows per strip of the second phase (a quarter of a GeoTIFF block: GDAL keeps the
# block until its last rows are written).
OUTPUT_ROWS = 128
MODES = ('tiles', 'overview')


@dataclass(frozen=True)
class SceneOptions:
    """Settings of a whole-scene run (the command-line options of ``tools/infer_scene.py``).

    Args:
        mode (str): ``'tiles'`` (the sentence applies to every tile: category-like prompts such
            as "the white storage tanks") or ``'overview'`` (the whole scene at one network input
            locates the target, so spatial words refer to the whole scene; tiles then refine it
            inside that region widened by ``region_margin``; everything outside is background).
        bands (tuple[int, ...], optional): 1-based bands taken as R, G, B (or one as grey).
            Default 1, 2, 3 (band 1 as grey for 1- and 2-band files).
        nodata (float, optional): Nodata value; default the file's.
        stretch (str): How data deeper than 8 bits become 8 bits: ``'shared'`` (one 2-98 %
            range for all bands, from a decimated sample of the scene), ``'per-band'``,
            ``'none'`` or ``'MIN,MAX'`` (see :func:`btdnet.utils.parse_stretch`).
        scale (float): Resample the scene by this factor before tiling, so that objects appear
            at the size the model was trained on. Outputs stay on the input's grid. Default 1.
        overlap (float): Share of the tile side neighbouring tiles overlap, in [0, 0.5].
        batch_size (int): Tiles per forward.
        region_margin (int, optional): Overview mode: widening of the located region in working
            pixels; default half the longer tile side.
        cog (bool): Write the GeoTIFFs as Cloud-Optimized GeoTIFFs with overviews.
        save_score (bool): Also write the target probability (``<stem>_score.tif``, float32).
        min_area (float): Drop polygons smaller than this (m^2 with a CRS, pixels without).
        simplify (float): Polygon simplification tolerance in pixels (0: pixel outlines).
        quicklook (bool): Write ``<stem>_quicklook.png``: the scene decimated to 1024 px with
            the polygons drawn.
    """

    mode: str = 'tiles'
    bands: tuple | None = None
    nodata: float | None = None
    stretch: str = 'shared'
    scale: float = 1.0
    overlap: float = DEFAULT_OVERLAP
    batch_size: int = 8
    region_margin: int | None = None
    cog: bool = False
    save_score: bool = False
    min_area: float = 0.0
    simplify: float = 0.0
    quicklook: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f'--mode: expected one of {MODES}, found {self.mode!r}')
        object.__setattr__(self, 'bands', parse_bands(self.bands))
        parse_stretch(self.stretch)
        check_overlap(self.overlap)
        checks = dict(
            scale=self.scale > 0 and math.isfinite(self.scale),
            batch_size=int(self.batch_size) >= 1,
            region_margin=self.region_margin is None or int(self.region_margin) >= 0,
            min_area=self.min_area >= 0,
            simplify=self.simplify >= 0,
        )
        for name, ok in checks.items():
            if not ok:
                raise ValueError(
                    f'--{name.replace("_", "-")}: invalid value {getattr(self, name)!r}'
                )
        if self.nodata is not None and not isinstance(self.nodata, (int, float)):
            raise ValueError(f'--nodata: expected a number, found {self.nodata!r}')

    def to_dict(self) -> dict:
        out = asdict(self)
        out['bands'] = list(self.bands) if self.bands else None
        return out


def scene_outputs(out_dir: str, stem: str) -> dict:
    """Paths of everything a run writes in ``out_dir`` for ``stem``."""
    names = dict(
        mask=f'{stem}_mask.tif',
        score=f'{stem}_score.tif',
        gpkg=f'{stem}.gpkg',
        geojson=f'{stem}.geojson',
        summary=f'{stem}.json',
        quicklook=f'{stem}_quicklook.png',
        state=f'{stem}.state.json',
        partial=f'{stem}.partial.f32',
    )
    return {key: osp.join(out_dir, name) for key, name in names.items()}


def _present(paths: dict) -> list:
    found = [p for p in paths.values() if osp.lexists(p)]
    found += [
        p + '.tiled.tif' for p in (paths['mask'], paths['score']) if osp.lexists(p + '.tiled.tif')
    ]
    return found


def check_out_dir(out_dir: str, stem: str, resume: bool = False, overwrite: bool = False) -> str:
    """Decide what a run may do with ``out_dir``, before anything is loaded.

    Returns:
        str: ``'fresh'`` (nothing there, or ``overwrite``), ``'resume'`` (a state file to
        continue from) or ``'done'`` (``resume`` and a finished run's summary).

    Raises:
        FileExistsError: Outputs of an earlier run are there and neither ``resume`` nor
            ``overwrite`` was asked for.
        ValueError: Both ``resume`` and ``overwrite``.
    """
    if resume and overwrite:
        raise ValueError('--resume and --overwrite exclude each other')
    paths = scene_outputs(out_dir, stem)
    found = _present(paths)
    if not found or overwrite:
        return 'fresh'
    if resume:
        if osp.exists(paths['state']):
            return 'resume'
        if osp.exists(paths['summary']):
            return 'done'
        raise FileExistsError(
            f'{out_dir} holds outputs for {stem} ({", ".join(osp.basename(p) for p in found)}) '
            'but no state file to resume from; pass --overwrite to start again'
        )
    raise FileExistsError(
        f'{out_dir} holds an earlier run for {stem} '
        f'({", ".join(sorted(osp.basename(p) for p in found))}); pass --overwrite to replace it '
        'or --resume to continue it'
    )


def _write_json(path: str, data: dict) -> None:
    """Write JSON atomically (a temporary file, flushed to disk, then renamed)."""
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _check_free_space(out_dir: str, needed: int) -> None:
    """Refuse to start when the intermediate file would not fit on the output's disk."""
    free = shutil.disk_usage(out_dir).free
    if free < needed:
        raise OSError(
            f'{out_dir}: {free / 2**30:.2f} GiB free, but the run needs {needed / 2**30:.2f} GiB '
            'for its intermediate file (4 bytes per working pixel) besides the outputs'
        )


def _differences(expected: dict, found: dict) -> list:
    keys = sorted(set(expected) | set(found))
    return [
        f'{k}: this run {expected.get(k)!r}, earlier run {found.get(k)!r}'
        for k in keys
        if expected.get(k) != found.get(k)
    ]


def _log(message: str, level=logging.INFO) -> None:
    print_log(message, logger='current', level=level)


def bilinear_axis(n_out: int, n_in: int, start: int, stop: int) -> tuple:
    """Output positions [start, stop) of an axis resampled from ``n_in`` to ``n_out`` pixels,
    centres aligned: (lower input index, upper input index, weight of the upper), per position."""
    u = np.clip((np.arange(start, stop) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    lo = np.floor(u).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (u - lo).astype(np.float32)


class _MarginFile:
    """The intermediate raster: the blended margin, float32, row-major, on the working grid.

    Plain file I/O (no memory map), so written rows do not count against the process's memory.
    """

    def __init__(self, path: str, height: int, width: int, resume: bool) -> None:
        self.path, self.height, self.width = path, height, width
        if resume and not osp.isfile(path):
            raise FileNotFoundError(
                f'{path}: the intermediate file of the run to resume is missing; pass '
                '--overwrite to start again'
            )
        self.fd = os.open(path, os.O_RDWR | (0 if resume else os.O_CREAT | os.O_TRUNC), 0o644)
        os.ftruncate(self.fd, height * width * 4)

    def write(self, y0: int, rows: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(rows, np.float32)).cast('B')
        offset = y0 * self.width * 4
        while data:
            written = os.pwrite(self.fd, data, offset)
            data, offset = data[written:], offset + written

    def sync(self) -> None:
        os.fsync(self.fd)

    def read(self, y0: int, y1: int) -> np.ndarray:
        size = (y1 - y0) * self.width * 4
        buf = bytearray(size)
        view, offset, got = memoryview(buf), y0 * self.width * 4, 0
        while got < size:
            n = os.preadv(self.fd, [view[got:]], offset + got)
            if n == 0:
                raise OSError(f'{self.path}: ends early (rows {y0}-{y1})')
            got += n
        return np.frombuffer(buf, np.float32).reshape(y1 - y0, self.width)

    def read_resampled(self, y0: int, y1: int, out_height: int, out_width: int) -> np.ndarray:
        """Output-grid rows [y0, y1) bilinearly interpolated from the working grid (pixel
        centres aligned; each output pixel depends only on its own position, so strips agree)."""
        r_lo, r_hi, r_t = bilinear_axis(out_height, self.height, y0, y1)
        c_lo, c_hi, c_t = bilinear_axis(out_width, self.width, 0, out_width)
        first = int(r_lo[0])
        block = np.nan_to_num(self.read(first, int(r_hi[-1]) + 1), nan=BACKGROUND_MARGIN)
        rows = block[r_lo - first] * (1 - r_t)[:, None] + block[r_hi - first] * r_t[:, None]
        return rows[:, c_lo] * (1 - c_t) + rows[:, c_hi] * c_t

    def close(self) -> None:
        os.close(self.fd)


def _cache_bytes(save_score: bool, width: int) -> int:
    """GDAL block cache for a run, in bytes (rasterio passes integers to GDAL as bytes).

    The scene is read in chunks of whole blocks (:meth:`RasterScene.read_rows`), so the source
    needs no cache; each output GeoTIFF keeps one block row (a block is written once complete).
    GDAL's default would let the cache grow to 5 % of the machine's memory.
    """
    outputs = GEOTIFF_BLOCK * width * (5 if save_score else 1)
    return outputs + 16 * 2**20


def _quicklook(sample_bgr: np.ndarray, shape: tuple) -> dict:
    """A quicklook canvas: the decimated scene, the polygons' area and outlines drawn on it."""
    inside = np.zeros(sample_bgr.shape[:2], np.uint8)
    return dict(image=sample_bgr, inside=inside, shape=shape, lines=[])


def _draw(quick: dict, polygons: list) -> None:
    height, width = quick['shape']
    qh, qw = quick['image'].shape[:2]
    factor = np.array([qw / width, qh / height])
    for polygon in polygons:
        rings = [polygon.exterior, *polygon.interiors]
        points = [np.round(np.asarray(r.coords)[:, :2] * factor).astype(np.int32) for r in rings]
        cv2.fillPoly(quick['inside'], points, 1)  # even-odd: holes stay out
        quick['lines'].append(points[0])


def _finish_quicklook(quick: dict, path: str, title: str) -> None:
    """Dim the scene outside the polygons, outline them in cyan, put the sentence on top."""
    image = quick['image']
    dimmed = (image.astype(np.uint16) * 2 // 5).astype(np.uint8)
    picture = np.where(quick['inside'][..., None].astype(bool), image, dimmed)
    cv2.polylines(picture, quick['lines'], True, (255, 255, 0), 2, cv2.LINE_AA)
    bar = np.full((28, picture.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, title[:160], (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(path, np.concatenate([bar, picture])):
        raise OSError(f'{path}: the quicklook could not be written')


def _file_time(path: str) -> str:
    """The file's modification time, ISO 8601 UTC: the GeoPackage's ``last_change``, the same
    for every run on the same input (so resumed and uninterrupted runs write the same bytes)."""
    stamp = datetime.fromtimestamp(os.stat(path).st_mtime, timezone.utc)
    return stamp.strftime('%Y-%m-%dT%H:%M:%S.') + f'{stamp.microsecond // 1000:03d}Z'


def infer_scene(
    model_or_predictor,
    image: str,
    text: str,
    out_dir: str,
    options: SceneOptions | None = None,
    *,
    stem: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    model_info: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
    background: bool = True,
) -> dict:
    """Segment what ``text`` names in a whole georeferenced scene, by tiles, strip by strip.

    Args:
        model_or_predictor: A model from :func:`~btdnet.apis.init_model`, or a
            :class:`~btdnet.apis.TilePredictor`.
        image (str): Raster file (GeoTIFF, ...).
        text (str): The sentence.
        out_dir (str): Output folder (created).
        options (SceneOptions, optional): Run settings; default :class:`SceneOptions()`.
        stem (str, optional): Output file stem; default the image's.
        resume (bool): Continue a killed run from its state file (its settings must match), or
            return a finished run's summary.
        overwrite (bool): Replace an earlier run's outputs.
        model_info (dict, optional): What identifies the model (config, checkpoint): stored in
            the summary and checked on resume.
        progress (callable, optional): ``progress(done, total)`` tiles, after every batch.
        background (bool): Read the next strip and write the finished ones in background
            threads while the model runs (the files are the same either way).

    Returns:
        dict: The run summary (also written to ``<stem>.json``).

    Raises:
        FileNotFoundError, IsADirectoryError, ValueError: A bad raster, band choice or
            sentence, each naming the file; settings that differ from the run being resumed.
        FileExistsError: ``out_dir`` holds an earlier run and neither ``resume`` nor
            ``overwrite`` was given.
    """
    started = time.perf_counter()
    text = check_text(text)
    options = options or SceneOptions()
    image = str(image)
    stem = stem or safe_file_stem(osp.splitext(osp.basename(image))[0])
    status = check_out_dir(out_dir, stem, resume, overwrite)
    paths = scene_outputs(out_dir, stem)
    predictor = as_tile_predictor(model_or_predictor)
    with RasterScene(image, options.bands, options.nodata, options.scale, options.stretch) as scene:
        settings = dict(
            options.to_dict(),
            sentence=text,
            scene=scene.describe(),
            tile_size=list(predictor.tile_size),
            model=model_info or {},
        )
        settings = json.loads(json.dumps(settings))  # as the state file holds them (lists)
        if status == 'done':
            with open(paths['summary'], encoding='utf-8') as f:
                summary = json.load(f)
            differ = _differences(settings, summary.get('settings', {}))
            if differ:
                raise ValueError(
                    f'{out_dir} holds a finished run for {stem} with other settings; pass '
                    '--overwrite to replace it:\n  ' + '\n  '.join(differ)
                )
            _log(f'{image}: the run in {out_dir} is already complete; nothing to do')
            return summary
        mkdir_or_exist(out_dir)
        state = None
        if status == 'resume':
            with open(paths['state'], encoding='utf-8') as f:
                state = json.load(f)
            differ = _differences(settings, state.get('settings', {}))
            if state.get('version') != STATE_VERSION or differ:
                raise ValueError(
                    f'{paths["state"]}: the run to resume used other settings; rerun it with '
                    'the same arguments, or pass --overwrite to start again:\n  '
                    + '\n  '.join(differ or [f'state version {state.get("version")}'])
                )
        else:
            if resume:
                _log(f'{out_dir} holds no earlier run for {stem}; starting from the beginning')
            for path in _present(paths):
                os.remove(path)
            _check_free_space(out_dir, scene.work_height * scene.work_width * 4)
        with rasterio.Env(GDAL_CACHEMAX=_cache_bytes(options.save_score, scene.width)):
            return _run(
                predictor,
                scene,
                text,
                options,
                paths,
                settings,
                state,
                started,
                progress,
                background,
            )


def _run(predictor, scene, text, options, paths, settings, state, started, progress, background):
    image = scene.path
    timings = dict(read=0.0, model=0.0, blend=0.0, write=0.0)
    start = time.perf_counter()
    if options.mode == 'overview' or options.quicklook:  # they need the whole scene
        scan = scene.scan(
            overview_shape=predictor.tile_size if options.mode == 'overview' else None
        )
    else:
        scan = scene.scan(max_chunk_rows=STRETCH_CHUNK_ROWS)
    scene.fit_stretch(scan['sample'], scan['sample_valid'])
    timings['read'] += time.perf_counter() - start
    work_shape = (scene.work_height, scene.work_width)
    grid = TileGrid(*work_shape, predictor.tile_size, options.overlap)
    crs = scene.crs
    if crs is None:
        _log(
            f'{image} has no CRS: the polygons are written in pixel coordinates (column, row) '
            'and no GeoJSON is written (RFC 7946 needs longitude / latitude)',
            logging.WARNING,
        )

    region, overview = None, None
    if options.mode == 'overview':
        start = time.perf_counter()
        view = scene.overview_bgr(scan)
        region, score = locate_region(predictor, view, text, work_shape, options.region_margin)
        timings['model'] += time.perf_counter() - start
        overview = dict(region.summary(), existence=score)
        if region.empty:
            _log(
                f'{image}: the overview located no target for {text!r}; no tile is run and the '
                'mask is background',
                logging.WARNING,
            )

    counts = TileCounts()
    first_strip = 0
    run_started = datetime.now(timezone.utc).isoformat(timespec='milliseconds')
    if state is not None:
        first_strip = state['strips_done']
        counts = TileCounts(**state['counts'])
        run_started = state['started']
        _log(f'{image}: resuming after strip {first_strip}/{len(grid.rows)}')
    margin_file = _MarginFile(paths['partial'], *work_shape, resume=state is not None)
    outputs = None
    try:
        phase = time.perf_counter()
        outputs = _Outputs(scene, margin_file, text, options, paths, scan, timings, background)
        if first_strip:
            outputs.advance(grid.finished_rows(first_strip - 1)[1])
        rows = []  # stays empty when the tiles phase had finished before the run stopped
        if first_strip < len(grid.rows):
            rows = blend_rows(
                predictor,
                text,
                grid,
                scene.read_rows,
                channels='margin',
                batch_size=options.batch_size,
                region=region,
                start_row=first_strip,
                counts=counts,
                timings=timings,
                progress=progress,
                prefetch=background,
            )
        for k, y0, y1, values, valid in rows:
            start = time.perf_counter()
            margin = values[0]
            if valid is not None:
                np.copyto(margin, np.float32(np.nan), where=~valid)
            margin_file.write(y0, margin)
            margin_file.sync()
            _write_json(
                paths['state'],
                dict(
                    version=STATE_VERSION,
                    settings=settings,
                    strips_done=k + 1,
                    counts=asdict(counts),
                    started=run_started,
                ),
            )
            timings['write'] += time.perf_counter() - start
            _log(f'{image}: strip {k + 1}/{len(grid.rows)} done (rows {y0}-{y1})')
            outputs.advance(y1)
        tiles_seconds = time.perf_counter() - phase
        if counts.run == 0 and counts.nodata == counts.total:
            _log(f'{image}: every window is nodata; the outputs are empty', logging.WARNING)

        phase = time.perf_counter()
        written = outputs.finish()
        outputs_seconds = time.perf_counter() - phase
    except BaseException:
        if outputs is not None:
            outputs.abort()
        raise
    finally:
        margin_file.close()

    total = time.perf_counter() - started
    run = counts.run - (state['counts']['run'] if state else 0)
    summary = dict(
        image=image,
        sentence=text,
        settings=settings,
        outputs={k: osp.basename(v) for k, v in written['files'].items()},
        working_size=list(work_shape),
        tile_size=list(predictor.tile_size),
        grid=dict(
            rows=len(grid.rows), cols=len(grid.cols), overlap_px=[grid.overlap_h, grid.overlap_w]
        ),
        tiles=asdict(counts),
        stretch=scene.stretch.to_dict(),
        overview=overview,
        existence=written['existence'],
        polygons=written['polygons'],
        area=written['area'],
        resumed_from_strip=first_strip if state is not None else None,
        timings_s=dict(
            {k: round(v, 3) for k, v in timings.items()},
            tiles_phase=round(tiles_seconds, 3),
            outputs_phase=round(outputs_seconds, 3),
            total=round(total, 3),
        ),
        tiles_per_s=round(run / tiles_seconds, 3) if tiles_seconds > 0 else None,
    )
    _write_json(paths['summary'], summary)
    for key in ('state', 'partial'):
        os.remove(paths[key])
    existence = written['existence']
    _log(
        f'{image}: {written["polygons"]} polygon(s); target {100 * existence["fg_fraction"]:.2f}% '
        f'of the valid pixels, mean margin {existence["fg_margin"]:.3f}; summary in '
        f'{paths["summary"]}'
    )
    return summary


class _Outputs:
    """The second phase: the mask / score GeoTIFFs, the polygons, the existence score and the
    quicklook, written strip by strip (``OUTPUT_ROWS``) from the intermediate file as soon as
    the rows they need are final. With ``background`` the strips are written by a worker thread
    while the model runs; either way they are written in the same order, so the files are the
    same.
    """

    def __init__(self, scene, margin_file, text, options, paths, scan, timings, background):
        self.scene, self.margin_file, self.timings = scene, margin_file, timings
        self.height, self.width = scene.height, scene.width
        self.text, self.paths = text, paths
        crs, transform = scene.crs, scene.transform
        timings.update(outputs_write=0.0, vectorise=0.0)
        # Output row i reads working rows up to needs[i] (bilinear, see read_resampled).
        self.needs = bilinear_axis(self.height, scene.work_height, 0, self.height)[1]
        self.same_grid = (scene.work_height, scene.work_width) == (self.height, self.width)
        self.files = dict(mask=paths['mask'], gpkg=paths['gpkg'])
        self.mask_writer = GeoTiffWriter(
            paths['mask'], self.height, self.width, np.uint8, MASK_NODATA, crs, transform,
            cog=options.cog,
        )  # fmt: skip
        self.score_writer = None
        if options.save_score:
            self.files['score'] = paths['score']
            self.score_writer = GeoTiffWriter(
                paths['score'], self.height, self.width, np.float32, float('nan'), crs,
                transform, cog=options.cog, resampling='average',
            )  # fmt: skip
        geojson = paths['geojson'] if crs is not None else None
        if geojson:
            self.files['geojson'] = geojson
        self.polygon_writer = PolygonWriter(
            paths['gpkg'],
            geojson,
            crs=crs,
            transform=transform,
            sentence=text,
            min_area=options.min_area,
            simplify=options.simplify,
            timestamp=_file_time(scene.path),
        )
        self.area = dict(unit=self.polygon_writer.unit, how=describe_area(crs))
        if crs is not None and crs.is_geographic:
            lon, lat = transform_points(
                crs,
                'EPSG:4326',
                [transform.c + transform.a * self.width / 2],
                [transform.f + transform.e * self.height / 2],
            )
            self.polygon_writer.set_equal_area_centre(lon[0], lat[0])
            _log(f'{scene.path}: {self.area["how"]}')
        self.quick = None
        if options.quicklook:
            self.files['quicklook'] = paths['quicklook']
            sample_bgr = scene.to_bgr(scan['sample'])
            sample_bgr *= scan['sample_valid'][..., None]
            self.quick = _quicklook(sample_bgr, (self.height, self.width))
        self.polygonizer = StripPolygonizer()
        self.num_valid = self.num_fg = 0
        self.margin_sum = 0.0
        self.next_row = 0
        self.pool = ThreadPoolExecutor(max_workers=1) if background else None
        self.pending = []

    def advance(self, work_rows: int) -> None:
        """Write the output strips whose working rows [0, work_rows) are final."""
        ready = int(np.searchsorted(self.needs, work_rows, side='left'))
        if self.pool is None:
            self._strips(ready)
            return
        self.pending.append(self.pool.submit(self._strips, ready))
        for future in [f for f in self.pending if f.done()]:
            self.pending.remove(future)
            future.result()  # a failed strip fails the run here

    def _strips(self, ready: int) -> None:
        while self.next_row < self.height:
            y0, y1 = self.next_row, min(self.height, self.next_row + OUTPUT_ROWS)
            if y1 > ready:
                return
            self._strip(y0, y1)
            self.next_row = y1

    def _strip(self, y0: int, y1: int) -> None:
        start = time.perf_counter()
        if self.same_grid:
            margin = self.margin_file.read(y0, y1)
            valid = ~np.isnan(margin)
        else:
            margin = self.margin_file.read_resampled(y0, y1, self.height, self.width)
            valid = self.scene.read_valid(y0, y1)
        fg = (margin > 0) & valid
        mask = fg.astype(np.uint8)
        np.copyto(mask, np.uint8(MASK_NODATA), where=~valid)
        # sigmoid(margin) = (1 + tanh(margin / 2)) / 2, in place; nodata NaN.
        prob = np.nan_to_num(margin, nan=BACKGROUND_MARGIN)
        prob *= 0.5
        np.tanh(prob, out=prob)
        prob *= 0.5
        prob += 0.5
        np.copyto(prob, np.float32(np.nan), where=~valid)
        self.mask_writer.write(y0, mask)
        if self.score_writer is not None:
            self.score_writer.write(y0, prob)
        self.num_valid += int(np.count_nonzero(valid))
        self.num_fg += int(np.count_nonzero(fg))
        self.margin_sum += float(np.sum(margin, where=fg, dtype=np.float64))
        self.timings['outputs_write'] += time.perf_counter() - start
        start = time.perf_counter()
        kept = self.polygon_writer.add(self.polygonizer.add_strip(fg, prob, y0))
        if self.quick is not None:
            _draw(self.quick, kept)
        self.timings['vectorise'] += time.perf_counter() - start

    def finish(self) -> dict:
        """Write what is left, close the files; the files, existence score and counts."""
        self.advance(self.scene.work_height)
        if self.pool is not None:
            for future in self.pending:
                future.result()
            self.pool.shutdown()
        start = time.perf_counter()
        kept = self.polygon_writer.add(self.polygonizer.finish())
        if self.quick is not None:
            _draw(self.quick, kept)
        count = self.polygon_writer.close()
        self.timings['vectorise'] += time.perf_counter() - start
        start = time.perf_counter()
        self.mask_writer.close()
        if self.score_writer is not None:
            self.score_writer.close()
        self.timings['outputs_write'] += time.perf_counter() - start
        if self.quick is not None:
            title = f'{self.text}  ({count} polygons)'
            _finish_quicklook(self.quick, self.paths['quicklook'], title)
        existence = dict(
            fg_fraction=self.num_fg / self.num_valid if self.num_valid else 0.0,
            fg_margin=self.margin_sum / self.num_fg if self.num_fg else 0.0,
            fg_pixels=self.num_fg,
            valid_pixels=self.num_valid,
        )
        return dict(files=self.files, existence=existence, polygons=count, area=self.area)

    def abort(self) -> None:
        """Stop after an error: wait for the worker, leave the files incomplete."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.polygon_writer.abort()
        for writer in (self.mask_writer, self.score_writer):
            if writer is not None:
                writer.dataset.close()
