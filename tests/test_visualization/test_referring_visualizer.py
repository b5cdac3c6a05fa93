"""Overlays: mask colours, the sentence banner, one picture per sentence from the hook."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from btdnet.visualization import (
    ReferringSegVisualizer,
    ReferringVisualizationHook,
    draw_referring_overlay,
    draw_sentence_masks,
    enlargement,
)
from btdnet.visualization.referring_visualizer import GT_COLOR, PRED_COLOR, SENTENCE_COLORS

GREY = 100


def masks():
    pred = np.zeros((20, 30), bool)
    pred[2:8, 3:9] = True
    gt = np.zeros((20, 30), bool)
    gt[10:18, 20:28] = True
    return pred, gt


def blend(color, alpha=0.5):
    return (GREY * (1 - alpha) + np.array(color, np.float32) * alpha).astype(np.uint8)


def test_panels_are_tinted_where_the_masks_are_and_text_sits_in_a_banner():
    image = np.full((20, 30, 3), GREY, np.uint8)
    pred, gt = masks()
    alone = draw_referring_overlay(image, pred, min_width=0)
    assert alone.shape == (20, 30, 3)  # no sentence, no facts: no banner
    assert np.array_equal(alone[5, 5], blend(PRED_COLOR))

    drawn = draw_referring_overlay(image, pred, 'the car', gt, iou=0.5, min_width=0)
    assert drawn.shape[1] == 2 * 30 + 4
    banner = drawn.shape[0] - 20
    assert banner > 0 and (drawn[:banner] > 200).any()  # white text on the dark banner
    body = drawn[banner:]
    # Left panel: ground truth in green; right panel (after the 4 px gap): prediction in red.
    assert np.array_equal(body[14, 24], blend(GT_COLOR))
    assert np.array_equal(body[5, 34 + 5], blend(PRED_COLOR))
    assert np.array_equal(body[5, 5], [GREY] * 3)  # no gt there
    assert np.array_equal(body[14, 34 + 24], [GREY] * 3)  # no prediction there
    assert np.array_equal(body[:, 30:34], np.full((20, 4, 3), 24, np.uint8))  # the gap


def test_long_sentences_wrap_and_small_images_are_enlarged():
    image = np.full((20, 30, 3), GREY, np.uint8)
    pred, _ = masks()
    short = draw_referring_overlay(image, pred, 'a car')
    long = draw_referring_overlay(image, pred, 'the small white car parked next to ' * 6)
    assert short.shape[1] == long.shape[1] == 30 * 13  # ceil(384 / 30) = 13
    assert long.shape[0] > short.shape[0]  # more lines of text
    assert short.shape[0] - 20 * 13 > 0


def test_bad_images_and_masks_are_refused():
    with pytest.raises(TypeError, match='uint8.*float32'):
        draw_referring_overlay(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r'mask of the image size \(4, 4\).*\(5, 5\)'):
        draw_referring_overlay(np.zeros((4, 4, 3), np.uint8), np.ones((5, 5)))


def test_sentence_masks_get_one_colour_each_and_a_legend():
    image = np.full((20, 30, 3), GREY, np.uint8)
    first, second = masks()
    overlap = np.zeros((20, 30), bool)
    overlap[4:14, 6:24] = True  # covers part of `first`
    body = draw_sentence_masks(image, [first, overlap], ['a', 'b'], legend=False, min_width=0)
    assert body.shape == (20, 30, 3)
    assert np.array_equal(body[3, 4], blend(SENTENCE_COLORS[0]))  # first only
    assert np.array_equal(body[10, 20], blend(SENTENCE_COLORS[1]))  # overlap only
    both = blend(SENTENCE_COLORS[0], 0.5).astype(np.float32)
    assert np.array_equal(
        body[6, 7], (both * 0.5 + np.float32(SENTENCE_COLORS[1]) * 0.5).astype(np.uint8)
    )
    assert np.array_equal(body[17, 2], [GREY] * 3)  # in no mask

    # A sentence without a mask (None) keeps its legend entry but draws nothing.
    none = draw_sentence_masks(
        image, [None, second], ['a', 'b'], alpha=1.0, legend=False, min_width=0
    )
    assert np.array_equal(none[4, 5], [GREY] * 3)
    assert np.array_equal(none[14, 24], SENTENCE_COLORS[1])

    drawn = draw_sentence_masks(image, [first, None], ['the car', 'the roof'], ['0.9', 'not found'])
    assert drawn.shape[1] == 30 * 13  # enlarged to min_width 384
    banner = drawn.shape[0] - 20 * 13
    assert banner > 0
    swatches = drawn[:banner]
    for color in SENTENCE_COLORS[:2]:  # each entry starts with a square of its colour
        assert (swatches == color).all(axis=2).sum() > 20
    with pytest.raises(ValueError, match='one mask .* per sentence.*2 masks, 1 sentences'):
        draw_sentence_masks(image, [first, second], ['a'])
    with pytest.raises(ValueError, match=r'opacity alpha in \[0, 1\], found 1.5'):
        draw_sentence_masks(image, [first], ['a'], alpha=1.5)


def sample(sample_id, text, img_path=None):
    pred, gt = masks()
    out = SegDataSample(metainfo=dict(sample_id=sample_id, text=text, img_path=img_path))
    out.pred_sem_seg = PixelData(data=torch.from_numpy(pred)[None].long())
    out.gt_sem_seg = PixelData(data=torch.from_numpy(gt | pred)[None].long())
    out.seg_logits = PixelData(
        data=torch.stack([torch.zeros(20, 30), torch.from_numpy(pred) * 2.0 - 1])
    )
    return out


def test_visualizer_writes_the_referring_overlay(tmp_path):
    vis = ReferringSegVisualizer(name='test_referring_vis_a')
    image = np.full((20, 30, 3), GREY, np.uint8)
    vis.add_datasample('x', image, sample('s1', 'the car'), out_file=str(tmp_path / 'x.png'))
    written = cv2.imread(str(tmp_path / 'x.png'))[..., ::-1]
    expected = draw_referring_overlay(
        image,
        masks()[0],
        'the car',
        masks()[1] | masks()[0],
        iou=36 / 100,
        existence=dict(fg_fraction=36 / 600, fg_margin=1.0),
    )
    assert np.array_equal(written, expected)


def test_hook_writes_one_picture_per_sentence_of_the_same_image(tmp_path):
    img_path = tmp_path / 'scene.png'
    cv2.imwrite(str(img_path), np.full((20, 30, 3), GREY, np.uint8))
    ReferringSegVisualizer.get_instance('test_referring_vis_b')  # as the runner builds it
    hook = ReferringVisualizationHook(draw=True, interval=1, out_dir=str(tmp_path / 'show'))
    outputs = [sample('7/0', 'the car', str(img_path)), sample('7/1', 'the roof', str(img_path))]
    hook.after_test_iter(SimpleNamespace(iter=0), 0, {}, outputs)
    files = sorted(p.name for p in (tmp_path / 'show').iterdir())
    assert files == ['7_0.png', '7_1.png']
    first = cv2.imread(str(tmp_path / 'show' / '7_0.png'))
    second = cv2.imread(str(tmp_path / 'show' / '7_1.png'))
    assert first.shape == second.shape and not np.array_equal(first, second)  # other sentence


def test_enlargement_stops_at_the_pixel_budget():
    assert enlargement((40, 56), 384) == 7  # ceil(384 / 56), 110 K pixels: within the budget
    assert enlargement((20000, 1), 384) == 14  # floor(sqrt(4e6 / 20000)), not 384
    assert enlargement((3000, 3000), 384) == 1  # wide enough already
    assert enlargement((5000, 1000), 384, max_pixels=1000) == 1  # larger than the budget


def test_a_1_x_20000_strip_is_drawn_within_bounded_memory():
    """Enlarged to 384 px wide, the strip would be 7.7 M x 384 px (8.8 GB); the budget keeps
    the drawing at 14 x its size (~12 MB a picture), whatever is drawn on it."""
    import tracemalloc

    strip = np.random.default_rng(0).integers(0, 256, (20000, 1, 3), dtype=np.uint8)
    mask = np.zeros((20000, 1), bool)
    mask[5000:9000] = True
    tracemalloc.start()
    try:
        drawn = draw_sentence_masks(strip, [mask, None], ['the long road', 'a car'])
        overlay = draw_referring_overlay(strip, mask, 'the long road', gt_mask=mask, iou=1.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert drawn.shape[1] == 14 and drawn.shape[0] > 14 * 20000  # legend above
    assert overlay.shape[1] == 2 * 10 + 4  # two panels of 20000 x 2 within it, and the gap
    assert peak < 128 * 2**20, f'peak {peak / 2**20:.0f} MiB'
