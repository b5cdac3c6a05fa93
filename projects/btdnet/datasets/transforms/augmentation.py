"""Augmentations specific to referring segmentation."""

import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class RandomBlackBoxes(BaseTransform):
    """Black out random rectangles of the image (random erasing, as RMSIN's training uses).

    Off by default: add it to a training pipeline after ``Resize``. Only the image changes; the
    mask keeps the whole target, so the model learns to segment partly hidden objects.

    Randomness comes from numpy's global generator, which mmengine seeds per worker (the
    ``randomness`` config), unless ``seed`` gives the transform its own generator.

    Required Keys:

    - img (np.ndarray, (H, W, C))

    Modified Keys:

    - img (rectangles set to 0, in place)

    Args:
        prob (float): Probability of boxing an image at all. Default: 0.5.
        num_boxes (tuple[int, int]): Inclusive range of the number of boxes. Default: (1, 3).
        size_ratio (tuple[float, float]): Range of a box side as a fraction of the image side.
            Default: (0.05, 0.2).
        seed (int, optional): Seed of a generator of the transform's own. Default: None.
    """

    def __init__(
        self,
        prob: float = 0.5,
        num_boxes: tuple = (1, 3),
        size_ratio: tuple = (0.05, 0.2),
        seed: int | None = None,
    ):
        if not 0 <= prob <= 1:
            raise ValueError(f'expected 0 <= prob <= 1, found {prob}')
        if not 0 <= num_boxes[0] <= num_boxes[1]:
            raise ValueError(f'expected 0 <= num_boxes[0] <= num_boxes[1], found {num_boxes}')
        if not 0 < size_ratio[0] <= size_ratio[1] <= 1:
            raise ValueError(
                f'expected 0 < size_ratio[0] <= size_ratio[1] <= 1, found {size_ratio}'
            )
        self.prob = prob
        self.num_boxes = tuple(num_boxes)
        self.size_ratio = tuple(size_ratio)
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def transform(self, results: dict) -> dict:
        # Without a seed, draw from numpy's global generator (seeded per worker by mmengine).
        rng = self._rng or np.random.default_rng(np.random.randint(2**31))
        if rng.random() >= self.prob:
            return results
        img = results['img']
        height, width = img.shape[:2]
        for _ in range(int(rng.integers(self.num_boxes[0], self.num_boxes[1] + 1))):
            bh = max(1, int(height * rng.uniform(*self.size_ratio)))
            bw = max(1, int(width * rng.uniform(*self.size_ratio)))
            y = int(rng.random() * (height - bh + 1))
            x = int(rng.random() * (width - bw + 1))
            img[y : y + bh, x : x + bw] = 0
        return results

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(prob={self.prob}, num_boxes={self.num_boxes}, '
            f'size_ratio={self.size_ratio}, seed={self.seed})'
        )
