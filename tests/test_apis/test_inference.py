"""btdnet.apis on the tiny config: outputs, image formats, bad input, checkpoint checks."""

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from btdnet.apis import (
    CheckpointMismatchError,
    inference_model,
    init_model,
    read_image,
    read_image_header,
    to_bgr_uint8,
    truncated_sentences,
)

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / 'configs' / 'btdnet' / 'btdnet_tiny_synthetic.py')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A randomly initialised tiny BTDNet saved as mmengine's Runner saves (meta + state_dict)."""
    from mmengine.config import Config

    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(TINY).model)
    path = tmp_path_factory.mktemp('ckpt') / 'tiny.pth'
    meta = dict(dataset_meta=dict(classes=('background', 'target'), palette=[[0, 0, 0], [9, 9, 9]]))
    torch.save(dict(meta=meta, state_dict=model.state_dict()), path)
    return path


@pytest.fixture(scope='module')
def model(checkpoint):
    return init_model(TINY, str(checkpoint), device='cpu')


@pytest.fixture(scope='module')
def scene(tmp_path_factory):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp('img') / 'scene.png'
    cv2.imwrite(str(path), img)
    return path, img


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_single_sentence_gives_mask_logits_and_existence_at_original_size(model, scene):
    path, _ = scene
    result = inference_model(model, str(path), 'the red car on the left')
    assert result.pred_sem_seg.data.shape == (1, 40, 56)
    logits = result.seg_logits.data
    assert logits.shape == (2, 40, 56)
    won = logits[1] > logits[0]
    assert torch.equal(result.pred_sem_seg.data[0].bool(), won)
    assert result.fg_fraction == pytest.approx(won.float().mean().item())
    expected_margin = (logits[1] - logits[0])[won].mean().item() if won.any() else 0.0
    assert result.fg_margin == pytest.approx(expected_margin, rel=1e-5)
    assert result.text == 'the red car on the left' and result.ori_shape == (40, 56)
    assert model.dataset_meta['palette'] == [[0, 0, 0], [9, 9, 9]]  # from the checkpoint


def test_several_sentences_for_one_image_match_one_at_a_time(model, scene):
    path, _ = scene
    texts = ['the red car', 'a large grey roof at the top']
    both = inference_model(model, path, texts)  # one batch of two (the default batch is 8)
    assert isinstance(both, list) and [r.text for r in both] == texts
    for k, text in enumerate(texts):
        alone = inference_model(model, path, text)
        assert torch.allclose(both[k].seg_logits.data, alone.seg_logits.data, atol=1e-5)
    assert not torch.allclose(both[0].seg_logits.data, both[1].seg_logits.data, atol=1e-3)


@pytest.mark.parametrize('batch_size', [0, -1, 1.5, True, '8'])
def test_nonsense_batch_size_is_refused(model, scene, batch_size):
    with pytest.raises(ValueError, match=f'batch_size must be an int >= 1, found {batch_size!r}'):
        inference_model(model, scene[0], 'the red car', batch_size=batch_size)


def test_array_input_equals_file_input(model, scene):
    path, img = scene
    from_file = inference_model(model, path, 'the red car')
    from_array = inference_model(model, img, 'the red car')
    assert torch.allclose(from_file.seg_logits.data, from_array.seg_logits.data, atol=1e-5)


def test_grey_rgba_and_16bit_files_and_arrays(model, scene, tmp_path):
    _, img = scene
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    rgba = np.dstack([img, np.full(img.shape[:2], 128, np.uint8)])
    deep = img.astype(np.uint16) * 257  # 16-bit with the same 8-bit content
    expected = inference_model(model, img, 'the red car').seg_logits.data
    for name, array in (('grey.png', grey), ('rgba.png', rgba), ('deep.tif', deep)):
        cv2.imwrite(str(tmp_path / name), array)
        out = inference_model(model, str(tmp_path / name), 'the red car')
        assert out.pred_sem_seg.data.shape == (1, 40, 56), name
        out_array = inference_model(model, array, 'the red car')
        assert torch.allclose(out.seg_logits.data, out_array.seg_logits.data, atol=1e-5), name
    # A 4th band is dropped: the same prediction as the 8-bit image.
    got = inference_model(model, rgba, 'the red car').seg_logits.data
    assert torch.allclose(got, expected, atol=1e-5)
    # 16 bits: one 2-98 % stretch shared by the three bands, recorded with the result.
    low, high = np.percentile(deep, (2, 98))
    stretched = np.clip((deep - low) * (255 / (high - low)) + 0.5, 0, 255).astype(np.uint8)
    got = inference_model(model, deep, 'the red car')
    reference = inference_model(model, stretched, 'the red car').seg_logits.data
    assert torch.allclose(got.seg_logits.data, reference, atol=1e-5)
    assert got.stretch.mode == 'shared' and got.stretch.low == (low,) * 3
    assert str(got.stretch) == f'shared 2-98 % stretch: {low:g}-{high:g}'
    assert to_bgr_uint8(grey).shape == (40, 56, 3)
    with pytest.raises(ValueError, match=r'\(H, W, 3\).*\(40, 56, 2\)'):
        to_bgr_uint8(np.zeros((40, 56, 2), np.uint8))


def test_bad_image_paths_say_what_was_found(model, tmp_path):
    with pytest.raises(FileNotFoundError, match='no file .*missing.png'):
        inference_model(model, str(tmp_path / 'missing.png'), 'a car')
    with pytest.raises(IsADirectoryError, match='found a directory'):
        inference_model(model, str(tmp_path), 'a car')
    (tmp_path / 'fake.png').write_bytes(b'this is not an image')
    with pytest.raises(ValueError, match='fake.png.*decode'):
        inference_model(model, str(tmp_path / 'fake.png'), 'a car')


@pytest.mark.parametrize('text', ['', '   ', ['a car', '']])
def test_empty_sentence_is_an_error(model, scene, text):
    with pytest.raises(ValueError, match='empty'):
        inference_model(model, scene[0], text)


def test_sentence_of_wrong_type_is_an_error(model, scene):
    with pytest.raises(TypeError, match='sentence 1: expected a str, found int'):
        inference_model(model, scene[0], ['a car', 3])
    with pytest.raises(TypeError, match='non-empty list'):
        inference_model(model, scene[0], [])


def test_200_word_sentence_is_truncated_with_a_visible_warning(model, scene):
    handler = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        long = ' '.join(['the small white car next to the road'] * 25)  # 200 words
        result = inference_model(model, scene[0], long)
    finally:
        logger.removeHandler(handler)
    assert result.pred_sem_seg.data.shape == (1, 40, 56)
    warning = next(m for m in handler.messages if 'inference_model' in m)
    assert '202 tokens' in warning and 'max_length=20' in warning
    assert 'truncated to "the small white car next to the road the small white car next' in warning
    # Truncation keeps the first 18 word pieces: same result as the cut sentence.
    short = inference_model(model, scene[0], ' '.join(long.split()[:18]))
    assert torch.allclose(result.seg_logits.data, short.seg_logits.data, atol=1e-5)


def test_checkpoint_not_matching_the_config_lists_the_keys(checkpoint, tmp_path):
    state = torch.load(checkpoint, weights_only=True)['state_dict']
    missing = next(k for k in state if k.startswith('decode_head'))
    reshaped = next(k for k, v in state.items() if v.dim() == 2)
    del state[missing]
    state[reshaped] = torch.zeros(3, 3)
    state['extra_head.weight'] = torch.zeros(1)
    bad = tmp_path / 'other.pth'
    torch.save(dict(state_dict=state), bad)
    with pytest.raises(CheckpointMismatchError) as err:
        init_model(TINY, str(bad))
    msg = str(err.value)
    assert 'other.pth' in msg
    assert f'1 missing keys (in the model, not in the checkpoint): {missing}' in msg
    assert '1 unexpected keys (in the checkpoint, not in the model): extra_head.weight' in msg
    assert f'1 shape mismatches: {reshaped} (checkpoint (3, 3), model (' in msg


def test_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    text = tmp_path / 'notes.pth'
    text.write_text('hello, I am not a checkpoint')
    with pytest.raises(ValueError, match='notes.pth.* not a .*PyTorch checkpoint'):
        init_model(TINY, str(text))
    tensor_only = tmp_path / 'tensor.pth'
    torch.save(torch.zeros(2), tensor_only)
    with pytest.raises(ValueError, match='expected a checkpoint dict .* found a Tensor'):
        init_model(TINY, str(tensor_only))
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        init_model(TINY, str(tmp_path / 'nope.pth'))


def test_init_model_flushes_denormals_on_the_cpu_unless_told_not_to(checkpoint):
    if not torch.set_flush_denormal(False):
        pytest.skip('this CPU cannot flush denormals')
    denormal = torch.tensor([1e-39])  # below float32's smallest normal number
    init_model(TINY, str(checkpoint), flush_denormal=False)
    assert (denormal * 1.0).item() > 0
    init_model(TINY, str(checkpoint))
    assert (denormal * 1.0).item() == 0  # process-global, as documented
    torch.set_flush_denormal(False)
    assert (denormal * 1.0).item() > 0


def test_ddp_prefixed_state_dict_and_slide_mode(checkpoint, scene, tmp_path):
    state = torch.load(checkpoint, weights_only=True)['state_dict']
    wrapped = tmp_path / 'ddp.pth'
    torch.save(dict(state_dict={f'module.{k}': v for k, v in state.items()}), wrapped)
    slide = dict(mode='slide', crop_size=(48, 48), stride=(32, 32))
    model = init_model(
        TINY,
        str(wrapped),
        cfg_options={
            'model.test_cfg': slide,
            'test_pipeline.1.scale': (80, 80),  # a network input larger than the crop
        },
    )
    assert model.test_cfg.mode == 'slide'
    result = inference_model(model, scene[0], 'the red car')
    assert result.pred_sem_seg.data.shape == (1, 40, 56)
    assert result.img_shape == (80, 80)


def test_image_header_gives_size_bands_and_georeferencing_without_decoding(scene, tmp_path):
    from geotiff import write_tif
    from rasterio.transform import from_origin

    _, img = scene
    cv2.imwrite(str(tmp_path / 'a.jpg'), img)
    cv2.imwrite(str(tmp_path / 'deep.png'), img.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / 'rgba.tif'), np.dstack([img, img[..., :1]]))
    header = read_image_header(tmp_path / 'a.jpg')
    assert (header['height'], header['width'], header['bands']) == (40, 56, 3)
    assert header['dtype'] == 'uint8' and header['crs'] is None and header['transform'] is None
    assert read_image_header(tmp_path / 'deep.png')['dtype'] == 'uint16'
    assert read_image_header(tmp_path / 'rgba.tif')['bands'] == 4
    transform = from_origin(500000.0, 4100000.0, 0.5, 0.5)
    write_tif(tmp_path / 'geo.tif', np.zeros((1, 40, 56), np.float32), transform=transform)
    geo = read_image_header(tmp_path / 'geo.tif')
    assert geo['crs'].to_epsg() == 32633 and geo['transform'] == transform
    assert geo['dtype'] == 'float32'
    # A truncated PNG still has its header: the size is known without the pixels.
    whole = cv2.imencode('.png', img)[1].tobytes()
    (tmp_path / 'cut.png').write_bytes(whole[:60])
    assert read_image_header(tmp_path / 'cut.png')['width'] == 56
    (tmp_path / 'notes.png').write_text('not an image')
    with pytest.raises(ValueError, match='notes.png: expected an image file, found 12 bytes'):
        read_image_header(tmp_path / 'notes.png')
    with pytest.raises(FileNotFoundError, match='no file .*missing.jpg'):
        read_image_header(tmp_path / 'missing.jpg')


def test_read_image_loads_as_inference_model_does(model, scene, tmp_path):
    path, img = scene
    assert np.array_equal(read_image(model, path), img)
    rgba = np.dstack([img, np.full(img.shape[:2], 7, np.uint8)]).astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / 'rgba16.tif'), rgba)
    loaded = read_image(model, tmp_path / 'rgba16.tif')
    assert loaded.shape == (40, 56, 3) and loaded.dtype == np.uint8
    from_file = inference_model(model, str(tmp_path / 'rgba16.tif'), 'the red car')
    from_read = inference_model(model, loaded, 'the red car')
    assert torch.allclose(from_file.seg_logits.data, from_read.seg_logits.data, atol=1e-5)
    (tmp_path / 'fake.png').write_bytes(b'not an image at all')
    with pytest.raises(ValueError, match='fake.png.*decode'):
        read_image(model, tmp_path / 'fake.png')


def test_truncated_sentences_say_what_the_model_reads(model):
    long = ' '.join(['the small white car next to the road'] * 3)  # 24 words, 26 tokens
    found = truncated_sentences(model, ['a car', long])
    assert list(found) == [1]
    num_tokens, budget, kept = found[1]
    assert (num_tokens, budget) == (26, 20)
    assert kept == ' '.join(long.split()[:18])
