"""Tiled prediction with blended overlaps: the core of whole-scene inference.

A scene larger than the network input is cut into tiles of the input size on a regular grid
(``overlap`` of the tile side shared between neighbours; the last row and column are shifted back
inside the scene). Each tile's logits are weighted by a smooth window and the weighted logits are
averaged, so the prediction is continuous across tile borders. The grid is walked one tile row at
a time: only the current strip's accumulators are held, and the scene rows that no later tile
touches are handed out as soon as the row is done. Both the in-memory API (:func:`predict_tiled`)
and the file-based scene inferencer (:mod:`btdnet.apis.scene`) run through :func:`blend_rows`.

The network is reached only through a *tile predictor* (:class:`TilePredictor`), so other
backends (e.g. ONNX Runtime) plug in through :func:`build_tile_predictor`:

.. code:: python

    predictor = build_tile_predictor(model)           # model from init_model
    predictor.tile_size                               # (h, w), the network input
    logits = predictor(tiles, 'the white storage tanks')
    # tiles: uint8 (B, h, w, 3) BGR; logits: float32 (B, 2, h, w) = [O_bg, O_fg]

The blending window (per axis, on a side that faces another tile): zero on the outer quarter of
the overlap, then a raised cosine up to 1 at the overlap's inner edge; sides on the scene border
keep weight 1. A model whose receptive field is smaller than a quarter of the overlap therefore
gives exactly its whole-image output (no seams by construction), and every pixel keeps a
positive total weight.
"""

import logging
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
import torch
from mmengine.dataset import Compose
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch import nn

from ..evaluation.rrsis_metric import existence_score
from .inference import BACKENDS, _warn_if_truncated

# Logit margin (O_fg - O_bg) given to pixels that no tile predicts: outside the overview's
# located region, or in all-nodata tiles. sigmoid(-1e4) is 0 in float32.
BACKGROUND_MARGIN = -1.0e4
DEFAULT_OVERLAP = 0.25


@runtime_checkable
class TilePredictor(Protocol):
    """What whole-scene inference needs from a model backend.

    Attributes:
        tile_size (tuple[int, int]): (h, w), the network input every tile is cut to.
    """

    tile_size: tuple[int, int]

    def __call__(self, tiles: np.ndarray, text: str) -> np.ndarray:
        """Logits of a batch of tiles for one sentence.

        Args:
            tiles (np.ndarray): uint8 (B, h, w, 3), BGR (as ``cv2.imread`` and the pipeline).
            text (str): The referring sentence.

        Returns:
            np.ndarray: float32 (B, 2, h, w): background logit O_bg, target logit O_fg.
        """


class SegmentorTilePredictor:
    """:class:`TilePredictor` of a model from ``init_model``, whatever its backend.

    A BTDNet (PyTorch) and an :class:`~btdnet.deployment.ONNXRuntimeSegmentor` (an exported
    graph) share the segmentor interface: tiles go through the model's own data preprocessor
    (BGR to RGB, normalisation) and ``model.encode_decode`` under ``torch.no_grad``; the
    sentence's key-phrase spans (for the masked sentence E_m) come from the test pipeline's
    ``ExtractKeyPhraseSpans``, once per sentence.

    Args:
        model (nn.Module): From :func:`~btdnet.apis.init_model` (it carries ``model.cfg``).
        tile_size (tuple[int, int], optional): (h, w); default the config's fixed network input
            size (:func:`~btdnet.deployment.exported_shape`), or the export shape of an ONNX
            graph (``model.input_shape``), the only size it takes.
    """

    def __init__(self, model: nn.Module, tile_size: tuple[int, int] | None = None) -> None:
        if not hasattr(model, 'cfg'):
            raise TypeError('tile predictor: expected a model from init_model (with .cfg)')
        self.model = model
        fixed = getattr(model, 'input_shape', None)  # an ONNX graph's export shape
        if fixed is not None and tile_size is not None and tuple(tile_size) != tuple(fixed):
            raise ValueError(
                f'tile predictor: the ONNX graph takes {fixed[0]} x {fixed[1]} tiles (its export '
                f'shape), found tile size {tuple(tile_size)}'
            )
        from ..deployment.onnx_export import exported_shape, test_steps

        cfg = model.cfg
        size = tile_size or fixed or exported_shape(cfg)  # the network's fixed input size
        if size is None:
            raise ValueError(
                'cannot tell the network input size: the test pipeline has no Resize with a fixed '
                '(w, h) scale and model.data_preprocessor has no size; pass tile_size'
            )
        self.tile_size = tuple(int(v) for v in size)
        init_default_scope(cfg.get('default_scope', 'mmseg'))
        steps = [s for s in test_steps(cfg) if s.get('type') == 'ExtractKeyPhraseSpans']
        self._spans = Compose(steps) if steps else None
        self._key_spans: dict[str, list] = {}

    def key_spans(self, text: str) -> list:
        """Key-phrase character spans of ``text`` (computed once per sentence)."""
        if text not in self._key_spans:
            if self._spans is None:
                self._key_spans[text] = []
            else:
                self._key_spans[text] = self._spans(dict(text=text))['key_spans']
            _warn_if_truncated(self.model, [text], caller='tile predictor')
        return self._key_spans[text]

    def __call__(self, tiles: np.ndarray, text: str) -> np.ndarray:
        """See :meth:`TilePredictor.__call__`."""
        tiles = np.asarray(tiles)
        if tiles.ndim != 4 or tiles.shape[3] != 3 or tiles.dtype != np.uint8:
            raise ValueError(
                f'expected uint8 tiles of shape (B, h, w, 3), found {tiles.dtype} {tiles.shape}'
            )
        spans = self.key_spans(check_text(text))
        height, width = tiles.shape[1:3]
        chw = torch.from_numpy(np.ascontiguousarray(tiles)).permute(0, 3, 1, 2)
        samples = [SegDataSample() for _ in range(len(tiles))]
        with torch.no_grad():
            data = self.model.data_preprocessor(dict(inputs=list(chw), data_samples=samples), False)
            inputs = data['inputs']
            meta = dict(
                text=text,
                key_spans=spans,
                img_shape=(height, width),
                ori_shape=(height, width),
                pad_shape=tuple(inputs.shape[-2:]),
            )
            logits = self.model.encode_decode(inputs, [meta] * len(tiles))
        return logits[:, :, :height, :width].float().cpu().numpy()


def build_tile_predictor(
    model, backend: str | None = None, tile_size: tuple[int, int] | None = None
) -> TilePredictor:
    """The tile predictor of a model from :func:`~btdnet.apis.init_model`.

    Args:
        model: A model from :func:`~btdnet.apis.init_model`: a BTDNet (``'pytorch'``), or the
            :class:`~btdnet.deployment.ONNXRuntimeSegmentor` of an exported folder
            (``'onnxruntime'``, ``'onnxruntime-int8'``).
        backend (str, optional): One of :data:`~btdnet.apis.BACKENDS`, checked against the
            model. Default: the model's own.
        tile_size (tuple[int, int], optional): (h, w) network input; default the config's (an
            ONNX graph takes only the size it was exported for).

    Returns:
        TilePredictor: ``predictor.tile_size`` and ``predictor(tiles, text) -> logits``.
    """
    from ..deployment import ONNXRuntimeSegmentor

    if backend is not None:
        if backend not in BACKENDS:
            raise ValueError(f'unknown backend {backend!r}; expected one of {BACKENDS}')
        if backend.startswith('onnxruntime') != isinstance(model, ONNXRuntimeSegmentor):
            raise ValueError(
                f'backend {backend!r} does not match the model ({type(model).__name__}): '
                f'build it with init_model(..., backend={backend!r})'
            )
    return SegmentorTilePredictor(model, tile_size)


def as_tile_predictor(model_or_predictor) -> TilePredictor:
    """A model from ``init_model`` becomes its PyTorch predictor; a predictor is kept."""
    if isinstance(model_or_predictor, nn.Module):
        return build_tile_predictor(model_or_predictor)
    if not isinstance(model_or_predictor, TilePredictor):
        raise TypeError(
            'expected a model from init_model or a tile predictor (tile_size, __call__), found '
            f'{type(model_or_predictor).__name__}'
        )
    return model_or_predictor


def check_text(text) -> str:
    """The sentence, or a TypeError / ValueError saying why a referring model cannot use it."""
    if not isinstance(text, str):
        raise TypeError(f'expected the sentence as a str, found {type(text).__name__}')
    if not text.strip():
        raise ValueError(
            f'the sentence is empty ({text!r}); a referring model needs a sentence naming the '
            'target to segment'
        )
    return text


def check_overlap(overlap: float) -> float:
    overlap = float(overlap)
    if not 0.0 <= overlap <= 0.5:
        raise ValueError(
            f'overlap: expected a fraction of the tile side in [0, 0.5], found {overlap}'
        )
    return overlap


# ---------------------------------------------------------------------------- grid & weights


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets along one axis; the last tile is shifted back to end on the border.

    Args:
        length (int): Scene length along the axis.
        tile (int): Tile length (a scene shorter than that gets one tile of its own length).
        stride (int): Offset between neighbours (>= 1).
    """
    if length <= tile:
        return [0]
    return list(range(0, length - tile, stride)) + [length - tile]


def blend_ramp(tile: int, overlap: int, taper_start: bool, taper_end: bool) -> np.ndarray:
    """The 1-D blending window (float32, ``tile``) of one axis.

    On a tapered side the first ``overlap // 4`` pixels weigh 0, then the weight rises as a
    raised cosine to 1 at ``overlap`` pixels from the edge; sides on the scene border keep 1.
    """
    weight = np.ones(tile, np.float64)
    if overlap > 0:
        dead = overlap // 4
        dist = np.arange(tile, dtype=np.float64)
        ramp = np.sin(0.5 * np.pi * np.clip((dist + 0.5 - dead) / (overlap - dead), 0, 1)) ** 2
        ramp[dist < dead] = 0.0
        if taper_start:
            weight *= ramp
        if taper_end:
            weight *= ramp[::-1]
    return weight.astype(np.float32)


@dataclass
class TileGrid:
    """The tiles over a scene of ``height`` x ``width``.

    Args:
        height (int): Scene height.
        width (int): Scene width.
        tile_size (tuple[int, int]): (h, w) network input.
        overlap (float): Fraction of the tile side shared by neighbours, in [0, 0.5].

    Attributes:
        tile_h, tile_w (int): Tile extent inside the scene (the network input, or the scene's
            side where the scene is smaller: such tiles are zero-padded to the input).
        rows, cols (list[int]): Tile start offsets.
    """

    height: int
    width: int
    tile_size: tuple[int, int]
    overlap: float = DEFAULT_OVERLAP
    tile_h: int = field(init=False)
    tile_w: int = field(init=False)
    rows: list = field(init=False)
    cols: list = field(init=False)

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f'empty scene ({self.height} x {self.width})')
        check_overlap(self.overlap)
        th, tw = self.tile_size
        self.overlap_h = int(round(self.overlap * th))
        self.overlap_w = int(round(self.overlap * tw))
        self.tile_h, self.tile_w = min(th, self.height), min(tw, self.width)
        self.rows = tile_starts(self.height, th, max(1, th - self.overlap_h))
        self.cols = tile_starts(self.width, tw, max(1, tw - self.overlap_w))
        self._weights: dict = {}

    @property
    def num_tiles(self) -> int:
        return len(self.rows) * len(self.cols)

    def finished_rows(self, k: int) -> tuple[int, int]:
        """Scene rows [y0, y1) that no tile after tile row ``k`` touches."""
        y1 = self.rows[k + 1] if k + 1 < len(self.rows) else self.height
        return self.rows[k], y1

    def weight(self, k: int, j: int) -> np.ndarray:
        """The (tile_h, tile_w) blending weights of tile (row ``k``, column ``j``)."""
        key = (k == 0, k == len(self.rows) - 1, j == 0, j == len(self.cols) - 1)
        if key not in self._weights:
            wy = blend_ramp(self.tile_h, self.overlap_h, not key[0], not key[1])
            wx = blend_ramp(self.tile_w, self.overlap_w, not key[2], not key[3])
            self._weights[key] = np.outer(wy, wx)
        return self._weights[key]


# ---------------------------------------------------------------------------- overview region


class Region:
    """Where the overview located the target, widened by a margin, over the scene.

    Args:
        located (np.ndarray): bool (oh, ow): the overview's target pixels (the whole scene
            resized to one network input).
        scene_shape (tuple[int, int]): (H, W) of the scene the tiles run on.
        margin (int): Widening in scene pixels (per axis, a rectangle).
    """

    def __init__(self, located: np.ndarray, scene_shape: tuple[int, int], margin: int) -> None:
        oh, ow = located.shape
        height, width = scene_shape
        self.scene_shape = (int(height), int(width))
        self.margin = int(margin)
        ky = math.ceil(self.margin * oh / height)
        kx = math.ceil(self.margin * ow / width)
        grown = located.astype(np.uint8)
        if grown.any() and (ky or kx):
            grown = cv2.dilate(grown, np.ones((2 * ky + 1, 2 * kx + 1), np.uint8))
        self.cells = grown.astype(bool)
        # Scene row / column -> overview cell.
        self._row_cell = (np.arange(height) * oh) // height
        self._col_cell = (np.arange(width) * ow) // width
        self.empty = not self.cells.any()

    def rows_mask(self, y0: int, y1: int) -> np.ndarray:
        """bool (y1 - y0, W): scene pixels inside the region."""
        return self.cells[self._row_cell[y0:y1]][:, self._col_cell]

    def intersects(self, y: int, x: int, h: int, w: int) -> bool:
        """Whether the scene window [y, y+h) x [x, x+w) touches the region."""
        r0, r1 = self._row_cell[y], self._row_cell[y + h - 1] + 1
        c0, c1 = self._col_cell[x], self._col_cell[x + w - 1] + 1
        return bool(self.cells[r0:r1, c0:c1].any())

    def summary(self) -> dict:
        """The region's share of the overview cells, its bounding box (x0, y0, x1, y1 in scene
        pixels) and the margin."""
        if self.empty:
            return dict(fraction=0.0, bbox=None, margin=self.margin)
        ys = np.flatnonzero(self.cells[self._row_cell].any(1))
        xs = np.flatnonzero(self.cells[:, self._col_cell].any(0))
        return dict(
            fraction=float(self.cells.mean()),
            bbox=[int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1],
            margin=self.margin,
        )


def locate_region(
    predictor: TilePredictor,
    overview: np.ndarray,
    text: str,
    scene_shape: tuple[int, int],
    margin: int | None = None,
) -> tuple[Region, dict]:
    """Run the whole scene, resized to one network input, and locate the target in it.

    Args:
        predictor (TilePredictor): The backend.
        overview (np.ndarray): uint8 (h, w, 3) BGR: the scene at ``predictor.tile_size``.
        text (str): Sentence.
        scene_shape (tuple[int, int]): (H, W) of the scene the tiles will run on.
        margin (int, optional): Widening in scene pixels; default half the longer tile side.

    Returns:
        tuple: the :class:`Region` and the overview's existence score (``fg_fraction``,
        ``fg_margin`` as :func:`~btdnet.evaluation.existence_score` gives them).
    """
    logits = predictor(overview[None], text)[0]
    if margin is None:
        margin = max(predictor.tile_size) // 2
    region = Region(logits[1] > logits[0], scene_shape, margin)
    return region, existence_score(torch.from_numpy(logits))


# ---------------------------------------------------------------------------- blending


@dataclass
class TileCounts:
    """Tiles of a run: ``run`` through the model, skipped as ``nodata`` (no valid pixel) or as
    ``outside`` the overview's region; ``total`` on the grid."""

    total: int = 0
    run: int = 0
    nodata: int = 0
    outside: int = 0

    @property
    def done(self) -> int:
        return self.run + self.nodata + self.outside


class _StripAccumulator:
    """Weighted sums of one tile row's logits (C, tile_h, W) and their weights (tile_h, W)."""

    def __init__(self, grid: TileGrid, channels: int) -> None:
        self.grid = grid
        self.values = np.zeros((channels, grid.tile_h, grid.width), np.float32)
        self.weights = np.zeros((grid.tile_h, grid.width), np.float32)

    def add(self, k: int, j: int, logits: np.ndarray) -> None:
        x = self.grid.cols[j]
        weight = self.grid.weight(k, j)
        self.values[:, :, x : x + self.grid.tile_w] += logits * weight
        self.weights[:, x : x + self.grid.tile_w] += weight

    def flush(self, k: int, fill: np.ndarray) -> np.ndarray:
        """Blended values of the rows finished after tile row ``k``; the rest moves up."""
        y0, y1 = self.grid.finished_rows(k)
        n = y1 - y0
        weights = self.weights[:n]
        covered = weights > 0
        out = np.empty((self.values.shape[0], n, self.grid.width), np.float32)
        for c in range(out.shape[0]):
            out[c] = fill[c]
            np.divide(self.values[c, :n], weights, out=out[c], where=covered)
        carry = self.grid.tile_h - n
        if carry > 0:
            self.values[:, :carry] = self.values[:, n:].copy()
            self.weights[:carry] = self.weights[n:].copy()
        self.values[:, max(carry, 0) :] = 0
        self.weights[max(carry, 0) :] = 0
        return out


ReadRows = Callable[[int, int], tuple[np.ndarray, np.ndarray | None]]


def blend_rows(
    predictor: TilePredictor,
    text: str,
    grid: TileGrid,
    read_rows: ReadRows,
    *,
    channels: str = 'logits',
    batch_size: int = 8,
    region: Region | None = None,
    start_row: int = 0,
    counts: TileCounts | None = None,
    timings: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
    prefetch: bool = False,
) -> Iterator[tuple[int, int, int, np.ndarray, np.ndarray | None]]:
    """Run the grid tile row by tile row and yield the finished scene rows, top to bottom.

    Tiles whose window holds no valid pixel, or that miss ``region``, are skipped. Batches
    never span two tile rows, so a resumed run makes exactly the calls an uninterrupted one
    makes.

    Args:
        predictor (TilePredictor): The backend.
        text (str): Sentence.
        grid (TileGrid): Tiles over the scene.
        read_rows (callable): ``read_rows(y0, y1) -> (bgr, valid)``: uint8 (n, W, 3) BGR scene
            rows and a bool (n, W) valid mask (None: all valid).
        channels (str): ``'logits'``: yield both logits (2, n, W); ``'margin'``: yield
            O_fg - O_bg (1, n, W), which is all a mask and a probability need.
        batch_size (int): Tiles per predictor call.
        region (Region, optional): Run only the tiles that touch it (the others count as
            ``outside``); the pixels outside it get the background.
        start_row (int): First tile row to yield (resume): tile row ``start_row - 1`` is run
            again, unyielded and uncounted, to rebuild the rows it shares with the next one.
        counts (TileCounts, optional): Updated in place.
        timings (dict, optional): Seconds added under ``read`` (reading, stretching, cutting
            tiles), ``model`` (predictor calls) and ``blend``.
        progress (callable, optional): ``progress(done, total)`` tiles, after every batch.
        prefetch (bool): Read the next tile row in a background thread while the model runs.

    Yields:
        tuple: ``(k, y0, y1, values, valid)``: tile row ``k`` is done, which finishes scene rows
        [y0, y1), with their float32 (C, n, W) blended
        values (pixels no tile predicted, and those outside ``region``, get the background:
        ``BACKGROUND_MARGIN`` for the target logit or the margin, 0 for the background logit),
        and their valid mask.
    """
    if channels not in ('logits', 'margin'):
        raise ValueError(f"channels: expected 'logits' or 'margin', found {channels!r}")
    batch_size = max(1, int(batch_size))
    counts = counts if counts is not None else TileCounts()
    counts.total = grid.num_tiles
    timings = timings if timings is not None else {}
    for key in ('read', 'model', 'blend'):
        timings.setdefault(key, 0.0)
    num_channels = 2 if channels == 'logits' else 1
    fill = np.array([0.0, BACKGROUND_MARGIN] if num_channels == 2 else [BACKGROUND_MARGIN])
    acc = _StripAccumulator(grid, num_channels)
    th, tw = predictor.tile_size
    first = max(0, start_row - 1)

    def timed_read(k: int):
        start = time.perf_counter()
        y = grid.rows[k]
        out = read_rows(y, y + grid.tile_h)
        return out, time.perf_counter() - start

    pool = ThreadPoolExecutor(max_workers=1) if prefetch else None
    try:
        pending = pool.submit(timed_read, first) if pool else None
        for k in range(first, len(grid.rows)):
            (strip, valid), seconds = pending.result() if pool else timed_read(k)
            timings['read'] += seconds
            if pool and k + 1 < len(grid.rows):
                pending = pool.submit(timed_read, k + 1)
            row_counts = counts if k >= start_row else TileCounts()
            y = grid.rows[k]
            selected = []
            for j, x in enumerate(grid.cols):
                if region is not None and not region.intersects(y, x, grid.tile_h, grid.tile_w):
                    row_counts.outside += 1
                elif valid is not None and not valid[:, x : x + grid.tile_w].any():
                    row_counts.nodata += 1
                else:
                    selected.append(j)
            for b in range(0, len(selected), batch_size):
                batch = selected[b : b + batch_size]
                start = time.perf_counter()
                tiles = np.zeros((len(batch), th, tw, 3), np.uint8)
                for i, j in enumerate(batch):
                    x = grid.cols[j]
                    tiles[i, : grid.tile_h, : grid.tile_w] = strip[:, x : x + grid.tile_w]
                timings['read'] += time.perf_counter() - start
                start = time.perf_counter()
                logits = predictor(tiles, text)
                timings['model'] += time.perf_counter() - start
                start = time.perf_counter()
                logits = logits[:, :, : grid.tile_h, : grid.tile_w]
                if num_channels == 1:
                    logits = logits[:, 1:2] - logits[:, 0:1]
                for i, j in enumerate(batch):
                    acc.add(k, j, logits[i])
                timings['blend'] += time.perf_counter() - start
                row_counts.run += len(batch)
                if progress is not None and k >= start_row:
                    progress(counts.done, counts.total)
            start = time.perf_counter()
            values = acc.flush(k, fill)
            y0, y1 = grid.finished_rows(k)
            if region is not None and k >= start_row:
                outside = ~region.rows_mask(y0, y1)
                for channel, value in zip(values, fill):
                    np.copyto(channel, value, where=outside)
            timings['blend'] += time.perf_counter() - start
            if k < start_row:
                continue
            if progress is not None:
                progress(counts.done, counts.total)
            yield k, y0, y1, values, None if valid is None else valid[: y1 - y0]
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------- in memory


def predict_tiled(
    model_or_predictor,
    image: np.ndarray,
    text: str,
    *,
    mode: str = 'tiles',
    overlap: float = DEFAULT_OVERLAP,
    batch_size: int = 8,
    region_margin: int | None = None,
    valid: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SegDataSample:
    """Segment what a sentence names in an image larger than the network input, by tiles.

    The in-memory counterpart of :func:`~btdnet.apis.infer_scene` (same grid, blending and
    modes), returning what :func:`~btdnet.apis.inference_model` returns.

    Args:
        model_or_predictor: A model from :func:`~btdnet.apis.init_model`, or a
            :class:`TilePredictor`.
        image (np.ndarray): uint8 (H, W, 3), BGR.
        text (str): The sentence.
        mode (str): ``'tiles'``: the sentence applies to every tile (category-like prompts);
            ``'overview'``: the image resized to one network input first locates the target,
            then tiles refine it inside that region widened by ``region_margin``; everything
            outside is background.
        overlap (float): Share of the tile side neighbours overlap, in [0, 0.5]. Default 0.25.
        batch_size (int): Tiles per forward. Default 8.
        region_margin (int, optional): Overview mode: widening in pixels; default half the
            longer tile side.
        valid (np.ndarray, optional): bool (H, W); tiles without a valid pixel are skipped
            (their pixels become background).
        progress (callable, optional): ``progress(done, total)`` tiles, after every batch.

    Returns:
        SegDataSample: ``pred_sem_seg`` (1, H, W) 0/1, ``seg_logits`` (2, H, W) blended
        [O_bg, O_fg], and in the metainfo ``text``, ``img_shape``, ``ori_shape``, ``mode``,
        ``tiles`` (run / skipped counts), ``region`` (overview mode) and the existence score
        ``fg_fraction`` / ``fg_margin`` (:func:`~btdnet.evaluation.existence_score`).
    """
    text = check_text(text)
    if mode not in ('tiles', 'overview'):
        raise ValueError(f"mode: expected 'tiles' or 'overview', found {mode!r}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(
            f'predict_tiled: expected a uint8 (H, W, 3) BGR image, found {image.dtype} '
            f'{image.shape} (btdnet.apis.to_bgr_uint8 converts other arrays)'
        )
    height, width = image.shape[:2]
    if valid is not None and valid.shape != (height, width):
        raise ValueError(f'valid: expected a ({height}, {width}) mask, found {valid.shape}')
    predictor = as_tile_predictor(model_or_predictor)
    grid = TileGrid(height, width, predictor.tile_size, overlap)

    region, meta = None, {}
    if mode == 'overview':
        th, tw = predictor.tile_size
        overview = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)
        region, score = locate_region(predictor, overview, text, (height, width), region_margin)
        meta['region'] = dict(region.summary(), overview_existence=score)
        if region.empty:
            print_log(
                f'predict_tiled: the overview located no target for {text!r}; the mask is empty',
                logger='current',
                level=logging.WARNING,
            )

    def read_rows(y0, y1):
        return image[y0:y1], None if valid is None else valid[y0:y1]

    counts = TileCounts()
    logits = np.empty((2, height, width), np.float32)
    for _, y0, y1, values, _ in blend_rows(
        predictor,
        text,
        grid,
        read_rows,
        channels='logits',
        batch_size=batch_size,
        region=region,
        counts=counts,
        progress=progress,
    ):
        logits[:, y0:y1] = values
    seg_logits = torch.from_numpy(logits)
    result = SegDataSample(
        metainfo=dict(
            text=text,
            img_shape=(height, width),
            ori_shape=(height, width),
            mode=mode,
            tiles=dict(counts.__dict__),
            **meta,
        )
    )
    result.seg_logits = PixelData(data=seg_logits)
    result.pred_sem_seg = PixelData(data=(seg_logits[1] > seg_logits[0])[None].long())
    result.set_metainfo(existence_score(seg_logits))
    return result
