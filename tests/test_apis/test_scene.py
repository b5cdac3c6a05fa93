"""Whole-scene inference (btdnet.apis.tiled / raster / polygons / scene) with stand-in predictors:
tiling and blending, georeferencing, polygons, overview mode, resume and bad input."""

import json
import math

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
import torch
from geotiff import UTM, write_tif
from rasterio.features import rasterize
from rasterio.transform import from_origin
from rasterio.warp import transform_geom

from btdnet.apis import (
    RasterScene,
    SceneOptions,
    TileGrid,
    build_tile_predictor,
    infer_scene,
    predict_tiled,
    scene_outputs,
    write_mask_geotiff,
)
from btdnet.apis.polygons import StripPolygonizer
from btdnet.apis.tiled import blend_ramp, tile_starts
from btdnet.evaluation import existence_score

SENTENCE = 'the white storage tanks'


def box_mean(gray: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window with zeros outside, summed in a fixed order (so a pixel's
    value does not depend on where the array was cut)."""
    height, width = gray.shape[-2:]
    padded = np.pad(gray, [(0, 0)] * (gray.ndim - 2) + [(radius, radius)] * 2)
    out = np.zeros_like(gray)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out += padded[..., dy : dy + height, dx : dx + width]
    return out / np.float32((2 * radius + 1) ** 2)


class BoxPredictor:
    """A deterministic stand-in model with a (2r+1)^2 receptive field: the target logit is the
    local mean brightness minus 0.5, the background logit 0 (so margin = mean - 0.5)."""

    def __init__(self, tile_size=(32, 32), radius: int = 1, fail_after: int | None = None):
        self.tile_size, self.radius = tile_size, radius
        self.calls, self.tiles_seen, self.fail_after = 0, [], fail_after

    def __call__(self, tiles: np.ndarray, text: str) -> np.ndarray:
        assert tiles.dtype == np.uint8 and tiles.shape[1:] == (*self.tile_size, 3)
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt('stand-in interruption')
        self.calls += 1
        self.tiles_seen.append(tiles.copy())
        gray = tiles.astype(np.float32).mean(-1) / 255
        fg = box_mean(gray, self.radius) - np.float32(0.5)
        return np.stack([np.zeros_like(fg), fg], axis=1)

    def whole(self, image: np.ndarray) -> np.ndarray:
        return box_mean(image.astype(np.float32).mean(-1) / 255, self.radius) - np.float32(0.5)


def blobs(height, width, seed=0, count=6) -> np.ndarray:
    """uint8 (H, W, 3): dark ground with bright discs (the stand-in's targets)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    image = rng.integers(0, 60, (height, width, 3)).astype(np.uint8)
    for _ in range(count):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(3, 9)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(200, 256)
    return image


def rgb_bands(image_bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image_bgr[..., ::-1].transpose(2, 0, 1))


def read_gpkg(path):
    meta, _, geometry, fields = pyogrio.raw.read(path)
    return meta, [shapely.from_wkb(g) for g in geometry], dict(zip(meta['fields'], fields))


# ------------------------------------------------------------------------------ grid, weights


def test_tile_starts_cover_the_scene_and_shift_the_last_tile_back():
    assert tile_starts(100, 32, 24) == [0, 24, 48, 68]  # last shifted back to end at 100
    assert tile_starts(32, 32, 24) == [0] and tile_starts(20, 32, 24) == [0]
    for length in range(33, 200, 7):
        starts = tile_starts(length, 32, 24)
        assert starts[-1] + 32 == length and all(b - a <= 24 for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize('overlap', [0.0, 0.1, 0.25, 0.5])
@pytest.mark.parametrize('shape', [(32, 32), (33, 90), (130, 71), (20, 45)])
def test_blend_weights_are_positive_everywhere(overlap, shape):
    grid = TileGrid(*shape, (32, 32), overlap)
    total = np.zeros(shape)
    for k, y in enumerate(grid.rows):
        for j, x in enumerate(grid.cols):
            total[y : y + grid.tile_h, x : x + grid.tile_w] += grid.weight(k, j)
    assert total.min() > 0


def test_blend_ramp_is_a_raised_cosine_and_one_on_the_scene_border():
    ramp = blend_ramp(32, 8, True, True)  # 8-px overlap: 2 dead pixels, then a raised cosine
    assert ramp[:2].tolist() == [0, 0] and ramp[8:24].tolist() == [1] * 16
    assert np.all(np.diff(ramp[1:8]) > 0) and np.allclose(ramp, ramp[::-1])
    border = blend_ramp(32, 8, False, True)  # the start lies on the scene border
    assert border[:24].tolist() == [1] * 24 and border[-2:].tolist() == [0, 0]


# ------------------------------------------------------------------------------ blending


def test_blended_tiles_equal_the_whole_image_output_no_seams():
    image = blobs(150, 173, seed=1)
    predictor = BoxPredictor(radius=1)  # receptive radius 1 <= dead zone (8 px overlap // 4)
    result = predict_tiled(predictor, image, SENTENCE, overlap=0.25, batch_size=5)
    margin = (result.seg_logits.data[1] - result.seg_logits.data[0]).numpy()
    whole = predictor.whole(image)
    # Away from the scene border, and here even on it (tile sides on the border keep weight 1
    # and see the same zero padding as the whole image).
    np.testing.assert_allclose(margin[2:-2, 2:-2], whole[2:-2, 2:-2], rtol=0, atol=1e-6)
    np.testing.assert_allclose(margin, whole, rtol=0, atol=1e-6)
    assert result.tiles['run'] == TileGrid(150, 173, (32, 32)).num_tiles > 30
    # The check can fail: a receptive field wider than the dead zone leaks tile borders in.
    wide = BoxPredictor(radius=4)
    leaky = predict_tiled(wide, image, SENTENCE, overlap=0.25)
    leaky_margin = (leaky.seg_logits.data[1] - leaky.seg_logits.data[0]).numpy()
    assert np.abs(leaky_margin - wide.whole(image)).max() > 1e-3


def test_predict_tiled_returns_what_inference_model_returns():
    image = blobs(90, 100, seed=2)
    calls = []
    result = predict_tiled(
        BoxPredictor(), image, SENTENCE, batch_size=3, progress=lambda d, t: calls.append((d, t))
    )
    logits = result.seg_logits.data
    assert logits.shape == (2, 90, 100) and logits.dtype == torch.float32
    assert result.pred_sem_seg.data.shape == (1, 90, 100)
    assert torch.equal(result.pred_sem_seg.data[0].bool(), logits[1] > logits[0])
    expected = existence_score(logits)
    assert (
        result.fg_fraction == expected['fg_fraction'] and result.fg_margin == expected['fg_margin']
    )
    assert result.text == SENTENCE and result.ori_shape == (90, 100)
    grid = TileGrid(90, 100, (32, 32))
    assert result.tiles == dict(total=grid.num_tiles, run=grid.num_tiles, nodata=0, outside=0)
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and calls[-1] == (grid.num_tiles, grid.num_tiles)


def test_scene_smaller_than_one_tile_is_padded_and_cropped():
    image = blobs(20, 27, seed=3, count=2)
    predictor = BoxPredictor()
    result = predict_tiled(predictor, image, SENTENCE)
    assert result.seg_logits.data.shape == (2, 20, 27) and predictor.calls == 1
    seen = predictor.tiles_seen[0][0]
    assert np.array_equal(seen[:20, :27], image) and not seen[20:].any() and not seen[:, 27:].any()


def test_invalid_tiles_are_skipped():
    image = blobs(64, 200, seed=4)
    nodata_colour = (1, 2, 3)
    assert not (image == nodata_colour).all(-1).any()
    image[:, 120:] = nodata_colour  # a colour no valid pixel has
    valid = np.ones((64, 200), bool)
    valid[:, 120:] = False
    predictor = BoxPredictor()
    result = predict_tiled(predictor, image, SENTENCE, valid=valid)
    # 32-px tiles at stride 24: rows 0, 24, 32 and columns 0, 24, ..., 168 (8); the 3 columns
    # starting at 120, 144 and 168 lie wholly in nodata: 3 x 3 = 9 skipped, 15 run.
    assert (result.tiles['total'], result.tiles['run'], result.tiles['nodata']) == (24, 15, 9)
    seen = np.concatenate(predictor.tiles_seen)
    assert len(seen) == 15 and all(t.shape[0] <= 8 for t in predictor.tiles_seen)
    in_nodata = (seen == nodata_colour).all(-1).reshape(len(seen), -1).all(1)
    assert not in_nodata.any()  # no tile the predictor saw lies entirely in nodata


def test_overview_mode_keeps_the_mask_inside_the_located_region():
    image = np.full((256, 256, 3), 20, np.uint8)
    image[40:90, 30:100] = 255  # a large target the overview sees
    image[220:222, 230:232] = 255  # a 2-px speck the 32-px overview averages away
    predictor = BoxPredictor(radius=0)
    tiles = predict_tiled(predictor, image, SENTENCE, mode='tiles')
    assert tiles.pred_sem_seg.data[0, 220:222, 230:232].all()  # tiles mode finds both
    over = predict_tiled(predictor, image, SENTENCE, mode='overview', region_margin=16)
    mask = over.pred_sem_seg.data[0].numpy().astype(bool)
    x0, y0, x1, y1 = over.region['bbox']
    assert x0 <= 30 and y0 <= 40 and x1 >= 100 and y1 >= 90 and x1 < 200 and y1 < 200
    outside = np.ones_like(mask)
    outside[y0:y1, x0:x1] = False
    assert mask[40:90, 30:100].all() and not mask[outside].any()
    assert over.tiles['outside'] > 0 and over.tiles['run'] < tiles.tiles['run']


# ------------------------------------------------------------------------------ polygons


def test_strip_polygons_equal_whole_mask_polygons():
    rng = np.random.default_rng(5)
    fg = (box_mean(rng.random((61, 47)).astype(np.float32), 2) > 0.52) | (
        rng.random((61, 47)) > 0.97
    )
    prob = rng.random((61, 47)).astype(np.float32)

    def run(step):
        polygonizer, out = StripPolygonizer(), []
        for y in range(0, 61, step):
            out += polygonizer.add_strip(fg[y : y + step], prob[y : y + step], y)
        return out + polygonizer.finish()

    whole = sorted(run(61), key=lambda p: (p.geometry.bounds[1], p.geometry.bounds[0]))
    assert len(whole) > 5
    for step in (1, 3, 7):
        strips = sorted(run(step), key=lambda p: (p.geometry.bounds[1], p.geometry.bounds[0]))
        assert len(strips) == len(whole)
        for a, b in zip(strips, whole):
            assert a.geometry.geom_type == 'Polygon' and a.geometry.equals(b.geometry)
            assert a.pixels == b.pixels and a.prob_sum == pytest.approx(b.prob_sum)
    # Pixel counts and areas agree; diagonal neighbours stay apart (4-connectivity).
    assert sum(p.pixels for p in whole) == fg.sum()
    assert all(p.geometry.area == p.pixels for p in whole)
    diagonal = np.zeros((4, 4), bool)
    diagonal[1, 1] = diagonal[2, 2] = True
    polygonizer = StripPolygonizer()
    parts = polygonizer.add_strip(diagonal[:2], np.ones((2, 4)), 0)
    parts += polygonizer.add_strip(diagonal[2:], np.ones((2, 4)), 2) + polygonizer.finish()
    assert len(parts) == 2


# ------------------------------------------------------------------------------ files


@pytest.fixture
def utm_scene(tmp_path):
    """uint16 UTM scene with a nodata frame and bright blobs: (path, bgr image, valid mask)."""
    image = blobs(150, 190, seed=6, count=8)
    bands = rgb_bands(image).astype(np.uint16) * 40 + 100
    valid = np.ones((150, 190), bool)
    valid[:12], valid[:, -20:] = False, False
    bands[:, ~valid] = 0
    return write_tif(tmp_path / 'scene.tif', bands, nodata=0), image, valid


def test_georeferencing_round_trip(utm_scene, tmp_path):
    path, _, valid = utm_scene
    out = tmp_path / 'out'
    options = SceneOptions(save_score=True, batch_size=4)
    summary = infer_scene(BoxPredictor(), path, SENTENCE, str(out), options)
    files = scene_outputs(str(out), 'scene')
    with rasterio.open(path) as src, rasterio.open(files['mask']) as mask_file:
        transform = src.transform
        assert mask_file.crs == src.crs and mask_file.transform == transform
        assert mask_file.shape == src.shape and mask_file.dtypes == ('uint8',)
        assert mask_file.nodata == 255 and mask_file.profile['tiled']
        assert mask_file.compression.value == 'DEFLATE'
        mask = mask_file.read(1)
        bounds = shapely.box(*src.bounds)
    assert np.array_equal(mask == 255, ~valid) and set(np.unique(mask)) == {0, 1, 255}
    with rasterio.open(files['score']) as score_file:
        score = score_file.read(1)
    assert np.isnan(score[~valid]).all() and np.array_equal(score[valid] > 0.5, mask[valid] == 1)

    meta, geoms, fields = read_gpkg(files['gpkg'])
    assert rasterio.crs.CRS.from_user_input(meta['crs']) == rasterio.crs.CRS.from_epsg(32633)
    assert len(geoms) == summary['polygons'] > 3
    assert all(bounds.contains(g) for g in geoms)
    burnt = rasterize([(g, 1) for g in geoms], out_shape=mask.shape, transform=transform)
    assert np.array_equal(burnt == 1, mask == 1)  # the polygons cover the mask's pixels exactly
    pixel_area = 0.5 * 0.5
    assert np.allclose(fields['area_m2'], [g.area for g in geoms])
    assert np.all(np.mod(fields['area_m2'] / pixel_area, 1) == 0)
    assert set(fields['sentence']) == {SENTENCE}
    first = rasterize([(geoms[0], 1)], out_shape=mask.shape, transform=transform) == 1
    assert fields['score'][0] == pytest.approx(score[first].mean(), rel=1e-5)

    with open(files['geojson']) as f:
        collection = json.load(f)
    assert len(collection['features']) == len(geoms) and 'crs' not in collection
    for feature, geom in zip(collection['features'], geoms):
        ring = np.array(feature['geometry']['coordinates'][0])
        assert np.all(np.abs(ring[:, 0]) <= 180) and np.all(np.abs(ring[:, 1]) <= 90)
        expected = shapely.geometry.shape(transform_geom(UTM, 'EPSG:4326', geom.__geo_interface__))
        lonlat = shapely.geometry.shape(feature['geometry'])
        assert lonlat.centroid.distance(expected.centroid) < 1e-6
        assert shapely.Polygon(ring).exterior.is_ccw  # RFC 7946 winding
        assert feature['properties']['sentence'] == SENTENCE
    assert 14.0 < collection['features'][0]['geometry']['coordinates'][0][0][0] < 16.0

    assert summary['existence']['valid_pixels'] == valid.sum()
    assert summary['existence']['fg_pixels'] == (mask == 1).sum()
    assert summary['tiles']['run'] + summary['tiles']['nodata'] == summary['tiles']['total']
    assert not any((out / name).exists() for name in ('scene.state.json', 'scene.partial.f32'))
    assert summary['area']['unit'] == 'm2'


def test_file_and_in_memory_paths_agree(utm_scene, tmp_path):
    path, _, valid = utm_scene
    infer_scene(BoxPredictor(), path, SENTENCE, str(tmp_path / 'o'), SceneOptions(save_score=True))
    with RasterScene(path) as scene:
        scene.fit_stretch(*scene.sample())
        bgr, valid_rows = scene.read_rows(0, scene.height)
    result = predict_tiled(BoxPredictor(), bgr, SENTENCE, valid=valid_rows)
    logits = result.seg_logits.data.numpy()
    prob = 1 / (1 + np.exp(-(logits[1] - logits[0])))
    with rasterio.open(tmp_path / 'o' / 'scene_score.tif') as f:
        score = f.read(1)
    np.testing.assert_allclose(score[valid], prob[valid], atol=1e-6)


def test_the_scene_is_read_by_windows_only(tmp_path, monkeypatch):
    image = blobs(1100, 2300, seed=13, count=30)
    path = write_tif(tmp_path / 'tall.tif', rgb_bands(image).astype(np.uint16))
    reads = []
    original = RasterScene._read

    def spy(self, reader, window=None):
        data = original(self, reader, window=window)
        reads.append((window, data.shape))
        return data

    monkeypatch.setattr(RasterScene, '_read', spy)
    predictor = BoxPredictor(tile_size=(128, 128))
    summary = infer_scene(predictor, path, SENTENCE, str(tmp_path / 'o'))
    windows = [shape for window, shape in reads if window is not None]
    assert len(windows) == len(reads)  # no whole read, not even a decimated one
    assert summary['grid']['rows'] > 10
    # Each row is read twice: in the pass for the stretch sample, and for the tiles.
    assert sum(rows for _, rows, cols in windows if cols == 2048) == 2 * 1100
    # Whole block rows (64 here) of at least ROW_CHUNK rows, and blocks of 2048 columns at most.
    assert all(rows <= 256 and cols <= 2048 for _, rows, cols in windows)


def test_scan_samples_and_averages_exactly(tmp_path):
    rng = np.random.default_rng(15)
    bands = rng.integers(1, 60000, (3, 300, 150)).astype(np.uint16)
    bands[:, :10, :10] = 0  # one overview cell of nodata
    bands[:, 10:20, 10:15] = 0  # half a cell
    path = write_tif(tmp_path / 'scan.tif', bands, nodata=0)
    with RasterScene(path) as scene:
        scan = scene.scan(max_side=100, overview_shape=(30, 15))
    rows = ((np.arange(100) + 0.5) * 3).astype(int)
    cols = ((np.arange(50) + 0.5) * 3).astype(int)
    assert np.array_equal(scan['sample'], bands[:, rows][:, :, cols])
    valid = bands.any(0)
    cells = bands.reshape(3, 30, 10, 15, 10).astype(np.float64)
    counts = valid.reshape(30, 10, 15, 10).sum((1, 3))
    mean = cells.sum((2, 4)) / np.maximum(counts, 1)
    assert np.array_equal(scan['overview_valid'], counts > 0) and not scan['overview_valid'][0, 0]
    assert np.abs(scan['overview'].astype(np.float64) - np.rint(mean)).max() <= 1


def test_read_rows_equals_a_direct_read_for_any_window_order(tmp_path):
    rng = np.random.default_rng(14)
    bands = rng.integers(1, 4000, (3, 300, 150)).astype(np.uint16)
    bands[:, 100:140, :] = 0  # nodata rows
    path = write_tif(tmp_path / 'rows.tif', bands, nodata=0)
    with RasterScene(path) as scene:
        scene.fit_stretch(*scene.sample())
        expected_bgr = scene.to_bgr(bands)
        expected_valid = bands.any(0)
        expected_bgr[~expected_valid] = 0
        for y0, y1 in [(0, 32), (24, 56), (48, 300), (290, 300), (5, 17), (120, 260), (0, 1)]:
            bgr, valid = scene.read_rows(y0, y1)
            assert np.array_equal(bgr, expected_bgr[y0:y1]), (y0, y1)
            assert np.array_equal(valid, expected_valid[y0:y1]), (y0, y1)


def test_overview_mode_on_a_file_stays_inside_the_region(tmp_path):
    image = np.full((256, 256, 3), 20, np.uint8)
    image[40:90, 30:100] = 255
    image[220:222, 230:232] = 255
    path = write_tif(tmp_path / 'o.tif', rgb_bands(image))
    options = SceneOptions(mode='overview', region_margin=16)
    summary = infer_scene(BoxPredictor(radius=0), path, SENTENCE, str(tmp_path / 'out'), options)
    with rasterio.open(tmp_path / 'out' / 'o_mask.tif') as f:
        mask = f.read(1)
    x0, y0, x1, y1 = summary['overview']['bbox']
    inside = np.zeros(mask.shape, bool)
    inside[y0:y1, x0:x1] = True
    assert (mask[40:90, 30:100] == 1).all() and not (mask[~inside] == 1).any()
    assert summary['tiles']['outside'] > 0 and summary['polygons'] == 1
    assert summary['overview']['existence']['fg_fraction'] > 0


def test_cog_has_overviews(tmp_path):
    image = blobs(700, 620, seed=7, count=20)
    path = write_tif(tmp_path / 'big.tif', rgb_bands(image))
    options = SceneOptions(cog=True, save_score=True, batch_size=32)
    infer_scene(BoxPredictor(tile_size=(128, 128)), path, SENTENCE, str(tmp_path / 'o'), options)
    for name in ('big_mask.tif', 'big_score.tif'):
        with rasterio.open(tmp_path / 'o' / name) as f:
            assert f.tags(ns='IMAGE_STRUCTURE').get('LAYOUT') == 'COG'
            assert f.overviews(1) and f.block_shapes[0] == (512, 512)
            assert f.crs.to_epsg() == 32633
    assert not list((tmp_path / 'o').glob('*.tiled.tif'))


def test_scale_resamples_before_tiling_and_outputs_stay_on_the_input_grid(tmp_path):
    image = blobs(80, 96, seed=8, count=5)
    path = write_tif(tmp_path / 's.tif', rgb_bands(image))
    predictor = BoxPredictor(radius=0)
    options = SceneOptions(scale=2.0, save_score=True)
    summary = infer_scene(predictor, path, SENTENCE, str(tmp_path / 'o'), options)
    assert summary['working_size'] == [160, 192]
    # 32-px tiles at stride 24 over 160 x 192 px: rows 0, 24, ..., 120, 128 (7) and columns
    # 0, 24, ..., 144, 160 (8): 56 tiles; the unscaled 80 x 96 px would take 3 x 4 = 12.
    assert sum(len(t) for t in predictor.tiles_seen) == 56 == summary['tiles']['run']
    with rasterio.open(tmp_path / 'o' / 's_mask.tif') as f, rasterio.open(path) as src:
        assert f.shape == (80, 96) and f.transform == src.transform
        mask = f.read(1)
    expected = predictor.whole(image) > 0
    # Bilinear up and back down: the same mask but for pixels on object outlines.
    assert (mask.astype(bool) != expected).mean() < 0.02


def test_resume_after_an_interruption_gives_identical_files(utm_scene, tmp_path):
    path = utm_scene[0]
    options = SceneOptions(save_score=True, batch_size=2, quicklook=True)
    full = tmp_path / 'full'
    infer_scene(BoxPredictor(), path, SENTENCE, str(full), options)
    part = tmp_path / 'part'
    with pytest.raises(KeyboardInterrupt):
        infer_scene(BoxPredictor(fail_after=9), path, SENTENCE, str(part), options)
    state = json.loads((part / 'scene.state.json').read_text())
    assert 0 < state['strips_done'] < 6
    with pytest.raises(FileExistsError, match='--overwrite to replace it or --resume'):
        infer_scene(BoxPredictor(), path, SENTENCE, str(part), options)
    with pytest.raises(ValueError, match='overlap: this run 0.3, earlier run 0.25'):
        other = SceneOptions(save_score=True, batch_size=2, quicklook=True, overlap=0.3)
        infer_scene(BoxPredictor(), path, SENTENCE, str(part), other, resume=True)
    summary = infer_scene(BoxPredictor(), path, SENTENCE, str(part), options, resume=True)
    assert summary['resumed_from_strip'] == state['strips_done']
    for name in (
        'scene_mask.tif',
        'scene_score.tif',
        'scene.gpkg',
        'scene.geojson',
        'scene_quicklook.png',
    ):
        assert (part / name).read_bytes() == (full / name).read_bytes(), name
    expected = json.loads((full / 'scene.json').read_text())
    for key in ('tiles', 'existence', 'polygons', 'settings', 'outputs', 'stretch'):
        assert summary[key] == expected[key], key
    again = infer_scene(BoxPredictor(), path, SENTENCE, str(part), options, resume=True)
    assert again['timings_s'] == summary['timings_s']  # already complete: nothing re-run


def test_resume_after_the_tiles_phase_only_writes_the_outputs(utm_scene, tmp_path, monkeypatch):
    import btdnet.apis.scene as scene_module

    path = utm_scene[0]
    infer_scene(BoxPredictor(), path, SENTENCE, str(tmp_path / 'full'))
    real = scene_module._Outputs.finish

    def interrupted(self):
        raise KeyboardInterrupt('stopped while writing the last outputs')

    monkeypatch.setattr(scene_module._Outputs, 'finish', interrupted)
    with pytest.raises(KeyboardInterrupt):
        infer_scene(BoxPredictor(), path, SENTENCE, str(tmp_path / 'part'))
    monkeypatch.setattr(scene_module._Outputs, 'finish', real)
    predictor = BoxPredictor()
    summary = infer_scene(predictor, path, SENTENCE, str(tmp_path / 'part'), resume=True)
    assert predictor.calls == 0 and summary['resumed_from_strip'] == summary['grid']['rows']
    for name in ('scene_mask.tif', 'scene.gpkg', 'scene.geojson'):
        assert (tmp_path / 'part' / name).read_bytes() == (tmp_path / 'full' / name).read_bytes()


def test_background_threads_write_the_same_files(utm_scene, tmp_path):
    options = SceneOptions(save_score=True, quicklook=True, batch_size=3)
    for background in (True, False):
        out = str(tmp_path / str(background))
        infer_scene(BoxPredictor(), utm_scene[0], SENTENCE, out, options, background=background)
    for name in ('scene_mask.tif', 'scene_score.tif', 'scene.gpkg', 'scene.geojson'):
        assert (tmp_path / 'True' / name).read_bytes() == (tmp_path / 'False' / name).read_bytes()


def test_the_stretch_sample_can_skip_rows(tmp_path):
    bands = np.random.default_rng(16).integers(1, 9000, (3, 2100, 40)).astype(np.uint16)
    path = write_tif(tmp_path / 'sparse.tif', bands)
    with RasterScene(path) as scene:
        full, sparse = scene.scan(), scene.scan(max_chunk_rows=3)
    # 64-px blocks: chunks of 256 rows; 9 of them, of which rows 0, 1024 and 2048 are read.
    rows = ((np.arange(1024) + 0.5) * 2100 / 1024).astype(int)
    kept = np.isin(rows // 256, [0, 4, 8])
    assert np.array_equal(sparse['sample'], full['sample'][:, kept])


# ------------------------------------------------------------------------------ bad input


def test_not_a_raster_and_truncated_tiff_name_the_file(tmp_path):
    text = tmp_path / 'notes.tif'
    text.write_text('not an image')
    with pytest.raises(ValueError, match=r'notes\.tif: not a raster'):
        RasterScene(str(text))
    bands = np.random.default_rng(0).integers(0, 65535, (3, 300, 300)).astype(np.uint16)
    full = write_tif(tmp_path / 'full.tif', bands)
    data = open(full, 'rb').read()
    cut = tmp_path / 'cut.tif'
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r'cut\.tif: the file is truncated or corrupt'):
        RasterScene(str(cut))
    with pytest.raises(FileNotFoundError, match='missing.tif'):
        RasterScene(str(tmp_path / 'missing.tif'))


def test_fewer_bands_than_asked(tmp_path):
    path = write_tif(tmp_path / 'two.tif', np.zeros((2, 40, 40), np.uint8))
    with pytest.raises(ValueError, match=r'two\.tif has 2 band\(s\), but --bands asks for band 3'):
        RasterScene(path, bands=(1, 2, 3))
    with pytest.raises(ValueError, match='one band'):
        SceneOptions(bands='1,2')


def test_one_band_16_bit_scene_is_stretched_once_and_repeated_as_grey(tmp_path):
    rng = np.random.default_rng(9)
    band = rng.integers(1000, 5000, (1, 70, 90)).astype(np.uint16)
    path = write_tif(tmp_path / 'grey.tif', band)
    predictor = BoxPredictor()
    summary = infer_scene(predictor, path, SENTENCE, str(tmp_path / 'o'))
    low, high = np.percentile(band, [2, 98])
    assert summary['stretch']['low'] == [pytest.approx(low)]
    assert summary['stretch']['high'] == [pytest.approx(high)]
    tiles = np.concatenate(predictor.tiles_seen)
    assert np.array_equal(tiles[..., 0], tiles[..., 1]) and np.array_equal(
        tiles[..., 0], tiles[..., 2]
    )
    levels = band[0, :32, :32].astype(np.float64)
    expected = np.clip((levels - low) * (255.0 / (high - low)) + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(predictor.tiles_seen[0][0, :, :, 0], expected)  # one stretch, all tiles


def test_bands_choose_the_rgb_order(tmp_path):
    bands = np.stack([np.full((40, 40), v, np.uint8) for v in (10, 20, 30, 40)])
    path = write_tif(tmp_path / 'four.tif', bands)
    with RasterScene(path, bands=(4, 2, 1)) as scene:
        bgr, valid = scene.read_rows(0, 5)
    assert bgr[0, 0].tolist() == [10, 20, 40] and valid is None  # B, G, R = bands 1, 2, 4


def test_all_nodata_scene_gives_empty_outputs_and_a_message(tmp_path, log_messages):
    path = write_tif(tmp_path / 'empty.tif', np.zeros((3, 70, 80), np.uint16), nodata=0)
    predictor = BoxPredictor()
    summary = infer_scene(predictor, path, SENTENCE, str(tmp_path / 'o'))
    assert predictor.calls == 0 and summary['tiles']['run'] == 0 and summary['polygons'] == 0
    assert any('every window is nodata' in m for m in log_messages)
    with rasterio.open(tmp_path / 'o' / 'empty_mask.tif') as f:
        assert (f.read(1) == 255).all()
    assert json.loads((tmp_path / 'o' / 'empty.geojson').read_text())['features'] == []
    assert summary['existence'] == dict(fg_fraction=0.0, fg_margin=0.0, fg_pixels=0, valid_pixels=0)


def test_no_crs_warns_once_and_writes_pixel_polygons_without_geojson(tmp_path, log_messages):
    image = blobs(100, 120, seed=10)
    path = write_tif(tmp_path / 'plain.tif', rgb_bands(image), crs=None)
    summary = infer_scene(BoxPredictor(), path, SENTENCE, str(tmp_path / 'o'))
    warnings = [m for m in log_messages if 'has no CRS' in m]
    assert len(warnings) == 1 and 'no GeoJSON' in warnings[0] and 'plain.tif' in warnings[0]
    assert not (tmp_path / 'o' / 'plain.geojson').exists() and 'geojson' not in summary['outputs']
    meta, geoms, fields = read_gpkg(str(tmp_path / 'o' / 'plain.gpkg'))
    assert meta['crs'] is None and 'area_px' in fields and len(geoms) > 0
    assert all(shapely.box(0, 0, 120, 100).contains(g) for g in geoms)
    assert list(fields['area_px']) == [g.area for g in geoms]


def test_geographic_crs_reports_area_in_square_metres(tmp_path, log_messages):
    image = np.full((60, 60, 3), 10, np.uint8)
    image[20:40, 20:40] = 255
    step = 1e-5  # degrees
    transform = from_origin(10.0, 45.0, step, step)
    path = write_tif(tmp_path / 'geo.tif', rgb_bands(image), crs='EPSG:4326', transform=transform)
    summary = infer_scene(BoxPredictor(radius=0), path, SENTENCE, str(tmp_path / 'o'))
    assert any('geographic CRS EPSG:4326' in m and 'equal-area' in m for m in log_messages)
    assert 'equal-area' in summary['area']['how']
    _, geoms, fields = read_gpkg(str(tmp_path / 'o' / 'geo.gpkg'))
    lat = math.radians(45.0 - 30 * step)
    expected = 400 * (step * 111320 * math.cos(lat)) * (step * 111132)  # 20 x 20 pixels
    assert len(geoms) == 1 and fields['area_m2'][0] == pytest.approx(expected, rel=0.01)


def test_existing_outputs_need_overwrite_or_resume(utm_scene, tmp_path):
    out = str(tmp_path / 'o')
    infer_scene(BoxPredictor(), utm_scene[0], SENTENCE, out)
    with pytest.raises(FileExistsError, match=r'holds an earlier run for scene \(scene\.geojson'):
        infer_scene(BoxPredictor(), utm_scene[0], SENTENCE, out)
    summary = infer_scene(BoxPredictor(), utm_scene[0], SENTENCE, out, overwrite=True)
    assert summary['resumed_from_strip'] is None


@pytest.mark.parametrize('text, error', [('', ValueError), ('   ', ValueError), (None, TypeError)])
def test_empty_sentence_is_refused_before_any_work(utm_scene, tmp_path, text, error):
    predictor = BoxPredictor()
    with pytest.raises(error, match='sentence'):
        infer_scene(predictor, utm_scene[0], text, str(tmp_path / 'o'))
    with pytest.raises(error, match='sentence'):
        predict_tiled(predictor, blobs(40, 40), text)
    assert predictor.calls == 0 and not (tmp_path / 'o').exists()


def test_a_full_disk_is_refused_before_any_work(utm_scene, tmp_path, monkeypatch):
    import shutil as shutil_module

    usage = shutil_module.disk_usage(tmp_path)
    monkeypatch.setattr(
        'btdnet.apis.scene.shutil.disk_usage', lambda path: usage._replace(free=1000)
    )
    predictor = BoxPredictor()
    with pytest.raises(OSError, match=r'0\.00 GiB free, but the run needs'):
        infer_scene(predictor, utm_scene[0], SENTENCE, str(tmp_path / 'o'))
    assert predictor.calls == 0


def test_write_mask_geotiff_on_its_own(tmp_path):
    mask = np.zeros((30, 40), np.uint8)
    mask[5:9, 10:20] = 1
    mask[0] = 255
    transform = from_origin(300000, 5000000, 2, 2)
    path = write_mask_geotiff(str(tmp_path / 'm.tif'), mask, crs=UTM, transform=transform)
    with rasterio.open(path) as f:
        assert np.array_equal(f.read(1), mask) and f.nodata == 255
        assert f.crs.to_epsg() == 32633 and f.transform == transform


def test_torch_tile_predictor_matches_inference_model(tiny_model):
    from btdnet.apis import build_tile_predictor, inference_model

    image = blobs(64, 64, seed=11)
    predictor = build_tile_predictor(tiny_model)
    assert predictor.tile_size == (64, 64)
    logits = predictor(image[None], SENTENCE)
    assert logits.shape == (1, 2, 64, 64) and logits.dtype == np.float32
    expected = inference_model(tiny_model, image, SENTENCE).seg_logits.data.numpy()
    np.testing.assert_allclose(logits[0], expected, rtol=0, atol=1e-4)
    batch = predictor(np.stack([image, image[::-1].copy()]), SENTENCE)
    np.testing.assert_allclose(batch[0], logits[0], rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match='unknown backend'):
        build_tile_predictor(tiny_model, backend='tensorrt')


def test_predict_tiled_with_the_tiny_model(tiny_model):
    image = blobs(100, 90, seed=12)
    result = predict_tiled(tiny_model, image, SENTENCE, batch_size=4)
    assert result.seg_logits.data.shape == (2, 100, 90) and result.tiles['run'] == 4
    # 64-px tiles at stride 48: rows 0, 36 and columns 0, 26. Rows 0-35 x columns 0-25 lie in
    # the first tile only: there the result is that tile's own prediction.
    predictor = build_tile_predictor(tiny_model)
    alone = predictor(np.ascontiguousarray(image[None, :64, :64]), SENTENCE)[0]
    np.testing.assert_allclose(
        result.seg_logits.data[:, :36, :26].numpy(), alone[:, :36, :26], atol=1e-5, rtol=0
    )


@pytest.fixture(scope='module')
def tiny_model(tiny_checkpoint):
    from conftest import TINY_CONFIG

    from btdnet.apis import init_model

    return init_model(str(TINY_CONFIG), tiny_checkpoint)


def test_an_internal_mask_or_alpha_band_marks_nodata_as_a_nodata_value_does(tmp_path):
    """GDAL's mask decides which pixels are valid: an internal mask or an alpha band gives the
    same tiles, stretch and outputs as nodata 0 written into the same pixels."""
    image = blobs(96, 96, seed=13, count=4)
    deep = rgb_bands(image).astype(np.uint16) * 64 + 500
    valid = np.ones((96, 96), bool)
    valid[:, :40] = False
    with_zeros = deep * valid
    paths = dict(nodata=write_tif(tmp_path / 'nodata.tif', with_zeros, nodata=0))
    paths['mask'] = write_tif(tmp_path / 'mask.tif', deep)  # values kept under the mask
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(paths['mask'], 'r+') as dst:
            dst.write_mask(valid.astype(np.uint8) * 255)
    alpha = (valid * 255).astype(np.uint16)[None]
    paths['alpha'] = write_tif(
        tmp_path / 'alpha.tif', np.concatenate([deep, alpha]), photometric='RGB', alpha='YES'
    )
    results = {}
    for name, path in paths.items():
        with RasterScene(path) as scene:
            assert scene.has_nodata, name
            np.testing.assert_array_equal(scene.read_valid(0, 96), valid, err_msg=name)
        out = tmp_path / name
        summary = infer_scene(BoxPredictor(), path, SENTENCE, str(out), SceneOptions(), stem='s')
        with rasterio.open(out / 's_mask.tif') as f:
            results[name] = (f.read(1), summary['tiles'], summary['stretch'])
    reference = results['nodata']
    assert reference[1]['nodata'] > 0 and (reference[0][:, :40] == 255).all()
    for name in ('mask', 'alpha'):
        np.testing.assert_array_equal(results[name][0], reference[0], err_msg=name)
        assert results[name][1:] == reference[1:], name
