"""One reader for every entry point: the same picture in the formats users meet gives the same
model input and the same mask (inference_model, read_image, infer_scene)."""

import cv2
import numpy as np
import pytest
import rasterio
import torch
from geotiff import write_tif

from btdnet.apis import SceneOptions, infer_scene, inference_model, read_image
from btdnet.utils import CorruptImageError, parse_stretch, read_image_file

SENTENCE = 'the red vehicle on the left'
GAIN, OFFSET = 64, 500  # how make_synthetic_scene.py writes 16 bits
FULL_RANGE = f'{OFFSET},{OFFSET + GAIN * 255}'  # the stretch that gives the 8-bit values back


def shared_stretch(values: np.ndarray, valid=None) -> np.ndarray:
    """The default by hand: one 2-98 % range of all bands' (valid) values, rounded, clipped."""
    low, high = np.percentile(values if valid is None else values[:, valid], (2, 98))
    return np.clip((values - low) * (255 / (high - low)) + 0.5, 0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def formats(tmp_path_factory, synthetic):
    """One 64 x 64 synthetic scene as an 8-bit PNG and as 16-bit files of several kinds."""
    bgr, _ = synthetic.make_scene(0, 1, size=64)
    rgb = np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1))  # (3, H, W) R, G, B
    deep = rgb.astype(np.uint16) * GAIN + OFFSET
    root = tmp_path_factory.mktemp('formats')
    cv2.imwrite(str(root / 'png8.png'), bgr)
    cv2.imwrite(str(root / 'png16.png'), deep[::-1].transpose(1, 2, 0))
    files = dict(
        rgb=write_tif(root / 'rgb.tif', deep, photometric='RGB'),
        minisblack=write_tif(root / 'minisblack.tif', deep, photometric='MINISBLACK'),
        rgbn=write_tif(root / 'rgbn.tif', np.concatenate([deep, deep[:1] // 2 + 900])),
        png16=str(root / 'png16.png'),
        opencv16=str(root / 'opencv16.tif'),
    )
    cv2.imwrite(files['opencv16'], deep[::-1].transpose(1, 2, 0))
    return dict(png8=str(root / 'png8.png'), bgr=bgr, deep=deep, **files)


DEEP_FORMATS = ('rgb', 'minisblack', 'rgbn', 'png16', 'opencv16')


def test_every_16_bit_format_reads_as_its_8_bit_png(formats):
    """Band order comes from the bands, not from the photometric tag: MINISBLACK is colour."""
    with rasterio.open(formats['minisblack']) as src:
        assert src.photometric is None or src.photometric.name != 'RGB'
    expected_default = shared_stretch(formats['deep'])[::-1].transpose(1, 2, 0)
    for name in DEEP_FORMATS:
        exact = read_image_file(formats[name], stretch=FULL_RANGE)
        np.testing.assert_array_equal(exact.bgr, formats['bgr'], err_msg=name)
        default = read_image_file(formats[name])
        np.testing.assert_array_equal(default.bgr, expected_default, err_msg=name)
        assert default.stretch.mode == 'shared' and len(set(default.stretch.low)) == 1
    assert read_image_file(formats['png8']).stretch.mode == 'none'


def test_same_mask_through_inference_model_and_the_scene_tool(formats, tiny_model, tmp_path):
    reference = inference_model(tiny_model, formats['png8'], SENTENCE)
    for name in DEEP_FORMATS:
        out = inference_model(tiny_model, formats[name], SENTENCE, stretch=FULL_RANGE)
        assert torch.equal(out.pred_sem_seg.data, reference.pred_sem_seg.data), name
        assert torch.allclose(out.seg_logits.data, reference.seg_logits.data, atol=1e-5), name
    # Default stretch: all 16-bit formats agree, read_image agrees, and the scene tool (one
    # 64 x 64 tile, as the tiny model's input) draws the same mask.
    masks = {
        name: inference_model(tiny_model, formats[name], SENTENCE).pred_sem_seg.data[0].numpy()
        for name in DEEP_FORMATS
    }
    for name in DEEP_FORMATS:
        np.testing.assert_array_equal(masks[name], masks['rgb'], err_msg=name)
    array = read_image(tiny_model, formats['minisblack'])
    from_array = inference_model(tiny_model, array, SENTENCE).pred_sem_seg.data[0].numpy()
    np.testing.assert_array_equal(from_array, masks['minisblack'])
    summary = infer_scene(
        tiny_model, formats['minisblack'], SENTENCE, str(tmp_path), SceneOptions(), stem='s'
    )
    assert summary['stretch']['mode'] == 'shared' and summary['tiles']['run'] == 1
    with rasterio.open(tmp_path / 's_mask.tif') as src:
        np.testing.assert_array_equal(src.read(1), masks['minisblack'])


def test_per_band_fixed_and_none(formats):
    deep = formats['deep']
    per_band = read_image_file(formats['rgb'], stretch='per-band')
    for c in range(3):
        low, high = np.percentile(deep[c], (2, 98))
        expected = np.clip((deep[c] - low) * (255 / (high - low)) + 0.5, 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(per_band.bgr[..., 2 - c], expected)
        assert per_band.stretch.low[c] == low
    none = read_image_file(formats['rgb'], stretch='none')
    np.testing.assert_array_equal(none.bgr, np.full_like(none.bgr, 255))  # every value > 255
    grey = read_image_file(formats['rgbn'], bands='4', stretch=FULL_RANGE)
    assert np.array_equal(grey.bgr[..., 0], grey.bgr[..., 2]) and grey.bands == (4,)
    assert str(parse_stretch('0,4095')) == 'fixed stretch 0-4095'
    for bad in ('2-98', '5,5', 'nan,1', 'per band'):
        with pytest.raises(ValueError, match='--stretch'):
            parse_stretch(bad)


def test_gdal_mask_blacks_nodata_and_keeps_it_out_of_the_stretch(formats, tmp_path):
    deep = formats['deep'].copy()
    deep[:, :, :8] = 0  # a nodata border
    deep[:, 20:30, 20:30] = 60000  # a bright valid patch
    path = write_tif(tmp_path / 'nodata.tif', deep, nodata=0)
    image = read_image_file(path)
    valid = np.ones(deep.shape[1:], bool)
    valid[:, :8] = False
    np.testing.assert_array_equal(image.valid, valid)
    expected = shared_stretch(deep, valid)[::-1].transpose(1, 2, 0) * valid[..., None]
    np.testing.assert_array_equal(image.bgr, expected)
    # An alpha band: transparent pixels are black.
    rgba = np.dstack([formats['bgr'], np.full((64, 64), 255, np.uint8)])
    rgba[:10, :, 3] = 0
    cv2.imwrite(str(tmp_path / 'alpha.png'), rgba)
    bgr = read_image_file(tmp_path / 'alpha.png').bgr
    assert not bgr[:10].any() and np.array_equal(bgr[10:], formats['bgr'][10:])


def test_the_stretch_of_a_large_image_comes_from_a_decimated_sample(tmp_path):
    rng = np.random.default_rng(0)
    values = (rng.gamma(2.0, 300.0, (3, 2100, 12)) + np.arange(2100)[:, None]).astype(np.uint16)
    path = write_tif(tmp_path / 'tall.tif', values)
    rows = ((np.arange(1024) + 0.5) * 2100 / 1024).astype(int)  # pixel centres, 1024 rows
    cols = ((np.arange(6) + 0.5) * 12 / 6).astype(int)  # the same factor: 6 of 12 columns
    sample = values[:, rows][:, :, cols]
    stretch = read_image_file(path).stretch
    assert stretch.low[0] == np.percentile(sample, 2) != np.percentile(values, 2)
    assert stretch.high[0] == np.percentile(sample, 98)


def test_truncated_and_unknown_files_are_named(formats, tmp_path):
    for name in ('png8', 'rgb'):
        data = open(formats[name], 'rb').read()
        cut = tmp_path / f'cut_{name}{formats[name][-4:]}'
        cut.write_bytes(data[: len(data) // 2] if name == 'png8' else data[:200])
        with pytest.raises(CorruptImageError, match=rf'cut_{name}\..*truncated'):
            read_image_file(cut)
    (tmp_path / 'notes.txt').write_text('a shopping list')
    with pytest.raises(ValueError, match='notes.txt: expected an image file, found 15 bytes'):
        read_image_file(tmp_path / 'notes.txt')


@pytest.fixture(scope='module')
def tiny_model(tiny_checkpoint):
    from conftest import TINY_CONFIG

    from btdnet.apis import init_model

    return init_model(str(TINY_CONFIG), tiny_checkpoint)


def test_stretch_fidelity_tool_prints_the_three_stretches(formats, capsys):
    from conftest import load_tool

    tool = load_tool('analysis_tools/stretch_fidelity.py')
    assert tool.main([formats['png8']]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:-1]]
    by_stretch = {}
    for row in rows:
        by_stretch.setdefault(row[-3], set()).add((float(row[-2]), float(row[-1])))
    assert by_stretch['hand'] == {(0.0, 0.0)}  # OFFSET,OFFSET+255*GAIN undoes every product
    assert len(by_stretch['shared']) == 1  # a percentile stretch ignores gain and offset
    (shared,), (per_band,) = by_stretch['shared'], by_stretch['per-band']
    assert shared[1] < per_band[1]  # the shared stretch keeps hues closer


def test_a_palette_png_reads_as_its_colours(formats, tmp_path):
    from PIL import Image

    rgb = formats['bgr'][..., ::-1]
    palette_image = Image.fromarray(np.ascontiguousarray(rgb)).quantize(colors=16)
    palette_image.save(tmp_path / 'palette.png')
    expected = np.asarray(palette_image.convert('RGB'))[..., ::-1]
    np.testing.assert_array_equal(read_image_file(tmp_path / 'palette.png').bgr, expected)


def test_an_alpha_band_masks_unless_it_is_read_as_a_colour(tmp_path):
    """GDAL calls the 4th band of a 4-band 8-bit GeoTIFF alpha by default: it masks the other
    bands' pixels, but a band read as a colour (--bands naming it, e.g. NIR) is data."""
    bands = np.stack([np.full((8, 8), v, np.uint8) for v in (10, 20, 30, 40)])
    bands[3, :2] = 0  # 'alpha' 0 on the first two rows
    path = write_tif(tmp_path / 'rgba.tif', bands)
    with rasterio.open(path) as src:
        assert src.colorinterp[3].name == 'alpha'
    default = read_image_file(path)
    assert not default.bgr[:2].any() and (default.bgr[2:] == (30, 20, 10)).all()
    assert default.valid is not None and not default.valid[:2].any() and default.valid[2:].all()
    nir = read_image_file(path, bands='4,2,1')
    assert nir.valid is None and (nir.bgr[2:] == (10, 20, 40)).all()
    assert (nir.bgr[:2] == (10, 20, 0)).all()  # the band's zeros are values, not a mask


def test_stretch_fidelity_tool_reads_every_file_format_alike(formats, tiny_checkpoint, capsys):
    from conftest import TINY_CONFIG, load_tool

    tool = load_tool('analysis_tools/stretch_fidelity.py')
    argv = [formats['png8'], '--config', str(TINY_CONFIG), '--checkpoint', tiny_checkpoint]
    assert tool.main([*argv, '--files', '--sentence', 'the red ship']) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('file ')]
    ious = {line.split()[1]: float(line.split('PNG ')[1].split()[0]) for line in lines}
    assert set(ious) == {'png16', 'tif_rgb', 'tif_minisblack', 'tif_4band'}
    assert len(set(ious.values())) == 1  # the photometric tag and a 4th band change nothing
    with pytest.raises(SystemExit):
        tool.main([formats['png8'], '--files'])
    assert '--files and --sentences need --config and --checkpoint' in capsys.readouterr().err
