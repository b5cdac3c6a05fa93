"""LoadRSImageFromFile (any band count / depth -> 3-channel uint8 BGR) and LoadReferringMask."""

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from btdnet.datasets.transforms import LoadReferringMask, LoadRSImageFromFile


@pytest.fixture
def colour_image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def _load(path, **kwargs):
    return LoadRSImageFromFile(**kwargs)(dict(img_path=str(path), sample_id='s1'))


def test_colour_tif_and_png_are_exact(tmp_path, colour_image):
    for name in ('a.tif', 'a.png'):
        cv2.imwrite(str(tmp_path / name), colour_image)
        out = _load(tmp_path / name)
        np.testing.assert_array_equal(out['img'], colour_image)
        assert out['img_shape'] == out['ori_shape'] == (24, 32)


def test_grayscale_becomes_three_equal_channels(tmp_path, colour_image):
    gray = colour_image[..., 0]
    for name in ('g.tif', 'g.jpg'):
        cv2.imwrite(str(tmp_path / name), gray)
        img = _load(tmp_path / name)['img']
        assert img.shape == (24, 32, 3) and img.dtype == np.uint8
        np.testing.assert_array_equal(img[..., 0], img[..., 2])
    np.testing.assert_array_equal(_load(tmp_path / 'g.tif')['img'][..., 1], gray)


def test_four_band_tif_drops_the_fourth_band(tmp_path, colour_image):
    fourth = np.full((24, 32, 1), 7, np.uint8)
    cv2.imwrite(str(tmp_path / 'b4.tif'), np.concatenate([colour_image, fourth], axis=2))
    img = _load(tmp_path / 'b4.tif')['img']
    np.testing.assert_array_equal(img, colour_image)


def test_sixteen_bit_tif_gets_one_stretch_shared_by_the_bands(tmp_path, colour_image):
    deep = colour_image.astype(np.uint16) * 64 + 500  # as the scene generator writes 16 bits
    cv2.imwrite(str(tmp_path / 'd.tif'), deep)
    out = _load(tmp_path / 'd.tif')
    low, high = np.percentile(deep, (2, 98))  # all three bands together
    expected = np.clip((deep - low) * (255 / (high - low)) + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out['img'], expected)
    assert out['stretch'].mode == 'shared'
    assert out['stretch'].low == (low,) * 3 and out['stretch'].high == (high,) * 3


def test_bands_and_stretch_are_settings(tmp_path, colour_image):
    deep = colour_image.astype(np.uint16) * 64 + 500
    cv2.imwrite(str(tmp_path / 'd.tif'), deep)  # BGR on disk as R, G, B bands 3, 2, 1
    img = _load(tmp_path / 'd.tif', bands='3,2,1', stretch='500,16820')['img']
    np.testing.assert_array_equal(img, colour_image[..., ::-1])  # 500 + 64 x 255 = 16820
    with pytest.raises(ValueError, match='--stretch: expected shared, per-band, none or MIN,MAX'):
        LoadRSImageFromFile(stretch='2-98')
    with pytest.raises(ValueError, match=r'd\.tif has 3 band\(s\), but --bands asks for band 4'):
        _load(tmp_path / 'd.tif', bands='4')


def test_to_float32(tmp_path, colour_image):
    cv2.imwrite(str(tmp_path / 'a.png'), colour_image)
    assert _load(tmp_path / 'a.png', to_float32=True)['img'].dtype == np.float32


def test_truncated_and_corrupt_images(tmp_path, colour_image):
    cv2.imwrite(str(tmp_path / 'full.jpg'), colour_image)
    data = (tmp_path / 'full.jpg').read_bytes()
    (tmp_path / 'cut.jpg').write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r'cut\.jpg: the JPEG is truncated.*\(sample_id s1\)'):
        _load(tmp_path / 'cut.jpg')
    (tmp_path / 'junk.tif').write_bytes(b'II*\x00' + bytes(range(200)))
    with pytest.raises(ValueError, match=r'junk\.tif: the TIFF file is truncated or corrupt'):
        _load(tmp_path / 'junk.tif')


def test_missing_image(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'image of sample_id s1 at .*nope\.jpg'):
        _load(tmp_path / 'nope.jpg')


class TestLoadReferringMask:
    mask = np.zeros((10, 12), np.uint8)
    mask[2:6, 3:9] = 1

    def test_rle_source(self):
        rle = mask_utils.encode(np.asfortranarray(self.mask))
        out = LoadReferringMask()(dict(mask_rle=rle, ori_shape=(10, 12), seg_fields=[]))
        np.testing.assert_array_equal(out['gt_seg_map'], self.mask)
        assert out['gt_seg_map'].flags.c_contiguous and out['seg_fields'] == ['gt_seg_map']

    def test_resized_nearest_to_the_image(self):
        rle = mask_utils.encode(np.asfortranarray(self.mask))
        out = LoadReferringMask()(dict(mask_rle=rle, ori_shape=(20, 24)))
        np.testing.assert_array_equal(out['gt_seg_map'], self.mask.repeat(2, 0).repeat(2, 1))

    def test_colour_mask_file_uses_first_band(self, tmp_path):
        colour = np.stack([self.mask * 200, np.full_like(self.mask, 255), self.mask * 0], -1)
        cv2.imwrite(str(tmp_path / 'm.png'), colour)
        out = LoadReferringMask()(dict(seg_map_path=str(tmp_path / 'm.png'), ori_shape=(10, 12)))
        np.testing.assert_array_equal(out['gt_seg_map'], self.mask)

    def test_no_source_and_corrupt_file(self, tmp_path):
        with pytest.raises(KeyError, match='sample_id x: expected a mask source'):
            LoadReferringMask()(dict(sample_id='x', ori_shape=(4, 4)))
        (tmp_path / 'm.tif').write_bytes(b'not a tif')
        with pytest.raises(ValueError, match=r'm\.tif \(sample_id x\)'):
            LoadReferringMask()(
                dict(sample_id='x', seg_map_path=str(tmp_path / 'm.tif'), ori_shape=(4, 4))
            )

    def test_empty_mask_kept_without_a_per_sample_line(self, log_messages):
        """Empty masks are counted once per dataset by the loaders, never per sample here."""
        rle = mask_utils.encode(np.zeros((4, 4), np.uint8, order='F'))
        for sample in (dict(sample_id='e1'), dict(sample_id='e2', no_target=True)):
            for _ in range(3):
                out = LoadReferringMask()(dict(sample, mask_rle=rle, ori_shape=(4, 4)))
                assert out['gt_seg_map'].shape == (4, 4) and not out['gt_seg_map'].any()
        assert not [m for m in log_messages if 'e1' in m or 'e2' in m or 'empty' in m]

    def test_repr(self):
        assert 'threshold=50' in repr(LoadReferringMask())
        assert 'to_float32=False' in repr(LoadRSImageFromFile())


@pytest.mark.parametrize('shape', [(1, 1), (1, 5), (5, 1), (7, 9), (801, 800)])
@pytest.mark.parametrize('density', [0.0, 0.3, 1.0])
def test_decode_rle_matches_pycocotools(shape, density):
    from btdnet.datasets.transforms.loading import decode_rle, rle_is_empty

    mask = (np.random.default_rng(shape[0]).random(shape) < density).astype(np.uint8)
    rle = mask_utils.encode(np.asfortranarray(mask))
    for counts in (rle['counts'], rle['counts'].decode()):
        out = decode_rle(dict(size=rle['size'], counts=counts))
        assert out.shape == shape and out.flags.c_contiguous and out.dtype == np.uint8
        np.testing.assert_array_equal(out, mask_utils.decode(rle))
        assert rle_is_empty(dict(size=rle['size'], counts=counts)) == (not mask.any())


def test_one_pixel_mask_is_not_empty(log_messages):
    mask = np.zeros((6, 5), np.uint8, order='F')
    mask[5, 4] = 1  # the last pixel: the runs end with the foreground
    rle = mask_utils.encode(mask)
    out = LoadReferringMask()(dict(mask_rle=rle, ori_shape=(6, 5), sample_id='p1'))
    assert out['gt_seg_map'].sum() == 1
    assert not any('sample_id p1' in m for m in log_messages)
