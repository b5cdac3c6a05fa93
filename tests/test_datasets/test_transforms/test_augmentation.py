"""RandomBlackBoxes: seeded, image only, within the configured sizes."""

import numpy as np
import pytest

from btdnet.datasets.transforms import RandomBlackBoxes


def _results():
    return dict(img=np.full((64, 80, 3), 200, np.uint8), gt_seg_map=np.ones((64, 80), np.uint8))


def test_seeded_and_image_only():
    a = RandomBlackBoxes(prob=1.0, num_boxes=(2, 2), size_ratio=(0.1, 0.2), seed=3)(_results())
    b = RandomBlackBoxes(prob=1.0, num_boxes=(2, 2), size_ratio=(0.1, 0.2), seed=3)(_results())
    np.testing.assert_array_equal(a['img'], b['img'])
    black = (a['img'] == 0).all(-1)
    assert 0 < black.sum() <= 2 * (64 * 0.2) * (80 * 0.2)
    assert a['gt_seg_map'].all()
    c = RandomBlackBoxes(prob=1.0, num_boxes=(2, 2), size_ratio=(0.1, 0.2), seed=4)(_results())
    assert not np.array_equal(a['img'], c['img'])


def test_global_rng_is_used_without_seed():
    t = RandomBlackBoxes(prob=1.0)
    np.random.seed(5)
    a = t(_results())['img']
    np.random.seed(5)
    np.testing.assert_array_equal(t(_results())['img'], a)


def test_prob_zero_and_bad_args():
    assert (RandomBlackBoxes(prob=0.0)(_results())['img'] == 200).all()
    with pytest.raises(ValueError, match='prob'):
        RandomBlackBoxes(prob=2)
    with pytest.raises(ValueError, match='size_ratio'):
        RandomBlackBoxes(size_ratio=(0.5, 0.1))
    assert 'seed=None' in repr(RandomBlackBoxes())
