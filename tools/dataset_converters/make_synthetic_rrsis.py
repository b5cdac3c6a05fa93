"""Write a synthetic referring remote-sensing dataset in the RRSIS-D and/or RefSegRS layout.

Each scene is a textured ground with roads and 2-4 objects of the two benchmarks' categories
(vehicle, storage tank, building, ship, tennis court, airplane), each a target of its own sentence.
Every object in a scene has its own colour and the sentence always names colour, category and
position ("the red vehicle on the left"), so only the text tells the targets apart and the task is
learnable by a small model within minutes. Scene ``i`` depends only on ``(seed, i)``.

Layouts written under OUT (see ``configs/_base_/datasets/{synthetic_rrsis,refsegrs}.py``)::

    OUT/rrsisd/refs(unc).p, OUT/rrsisd/instances.json, OUT/images/rrsisd/JPEGImages/*.jpg
    OUT/refsegrs/images/<id>.tif, OUT/refsegrs/masks/<id>.tif (0/255),
    OUT/refsegrs/output_phrase_{train,val,test}.txt

Example::

    python tools/dataset_converters/make_synthetic_rrsis.py data/synthetic_rrsis --format both \
        --num-images 300 --seed 0 --size 256
"""

import argparse
import json
import os
import os.path as osp
import pickle
import time

import cv2
import numpy as np
from pycocotools import mask as mask_utils

CATEGORIES = ('vehicle', 'storage tank', 'building', 'ship', 'tennis court', 'airplane')
# name -> BGR; far from the ground's greens, browns and greys.
COLOURS = {
    'red': (40, 40, 220),
    'blue': (220, 90, 30),
    'yellow': (30, 220, 240),
    'white': (245, 245, 245),
    'orange': (20, 140, 255),
    'purple': (200, 40, 150),
}
GROUNDS = ((70, 110, 80), (60, 100, 120), (110, 120, 125), (80, 130, 110))  # BGR
# Side lengths as fractions of the image side: (length range, width / length range).
SHAPES = {
    'vehicle': ((0.09, 0.12), (0.45, 0.55)),
    'storage tank': ((0.10, 0.16), (1.0, 1.0)),
    'building': ((0.14, 0.22), (0.6, 0.9)),
    'ship': ((0.16, 0.24), (0.25, 0.32)),
    'tennis court': ((0.15, 0.20), (0.5, 0.6)),
    'airplane': ((0.15, 0.21), (0.9, 1.0)),
}
SPLITS = ('train', 'val', 'test')


def _rotate(points: np.ndarray, angle: float, centre) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]]) + np.asarray(centre)


def _outline(category: str, length: float, width: float) -> list[np.ndarray]:
    """Polygons (centred at 0, unrotated, in pixels) that make up one object."""
    hl, hw = length / 2, width / 2
    if category == 'ship':  # a hull with a pointed bow
        return [np.array([[-hl, -hw], [hl - hw * 2, -hw], [hl, 0], [hl - hw * 2, hw], [-hl, hw]])]
    if category == 'airplane':  # fuselage + wings + tail
        fw = max(length * 0.08, 1.5)
        return [
            np.array([[-hl, -fw], [hl, -fw], [hl, fw], [-hl, fw]]),
            np.array([[-fw * 1.5, -hw], [fw * 1.5, -hw], [fw * 1.5, hw], [-fw * 1.5, hw]]),
            np.array(
                [
                    [-hl, -hw * 0.4],
                    [-hl + fw * 2, -hw * 0.4],
                    [-hl + fw * 2, hw * 0.4],
                    [-hl, hw * 0.4],
                ]
            ),
        ]
    return [np.array([[-hl, -hw], [hl, -hw], [hl, hw], [-hl, hw]])]


def _position_words(cx: float, cy: float, size: int) -> str:
    col = 'left' if cx < size / 3 else 'right' if cx > 2 * size / 3 else ''
    row = 'top' if cy < size / 3 else 'bottom' if cy > 2 * size / 3 else ''
    if row and col:
        return f'at the {row} {col}'
    if row:
        return f'at the {row}'
    if col:
        return f'on the {col}'
    return 'in the middle'


def make_scene(seed: int, index: int, size: int = 256, object_scale: float = 1.0):
    """Render scene ``index`` of a dataset seeded with ``seed``.

    Args:
        seed (int): Dataset seed.
        index (int): Scene number; the scene depends only on ``(seed, index)``.
        size (int): Image side in pixels.
        object_scale (float): Multiplies every object's size (the CPU demo uses larger objects,
            so that a model with a stride-4 output can draw their outlines). Default 1.0.

    Returns:
        tuple: ``image`` (np.uint8, (size, size, 3), BGR) and a list of objects, each a dict with
        ``category``, ``colour``, ``text`` and ``mask`` (np.uint8, (size, size), 0/1).
    """
    rng = np.random.default_rng([seed, index])
    # Ground: a smooth colour field plus fine grain (cheap: low-resolution noise, upsampled).
    base = np.array(GROUNDS[rng.integers(len(GROUNDS))], np.float32)
    low = rng.normal(0, 14, (8, 8, 1)) + rng.normal(0, 4, (8, 8, 3))
    low = low.astype(np.float32) + base
    img = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    img += rng.integers(-8, 9, (size, size, 1)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(1, 3)):  # roads with a dashed centre line
        pos, width = int(rng.uniform(0.1, 0.9) * size), max(3, int(0.05 * size))
        grey = int(rng.integers(95, 125))
        horizontal = rng.random() < 0.5
        p1, p2 = ((0, pos), (size, pos)) if horizontal else ((pos, 0), (pos, size))
        cv2.line(img, p1, p2, (grey, grey, grey + 5), width)
        for t in range(0, size, max(8, size // 16)):
            q1 = (t, pos) if horizontal else (pos, t)
            q2 = (t + size // 40, pos) if horizontal else (pos, t + size // 40)
            cv2.line(img, q1, q2, (200, 200, 200), 1)

    count = int(rng.integers(2, 5))
    colours = rng.permutation(list(COLOURS))[:count]
    objects, placed = [], []
    for colour in colours:
        category = CATEGORIES[rng.integers(len(CATEGORIES))]
        (lo, hi), (rlo, rhi) = SHAPES[category]
        length = rng.uniform(lo, hi) * size * object_scale
        width = length * rng.uniform(rlo, rhi)
        radius = np.hypot(length, width) / 2
        for _ in range(50):  # rejection sampling: objects do not touch
            cx, cy = rng.uniform(radius + 2, size - radius - 2, 2)
            if all(np.hypot(cx - x, cy - y) > radius + r + 3 for x, y, r in placed):
                break
        else:
            continue
        placed.append((cx, cy, radius))
        mask = np.zeros((size, size), np.uint8)
        if category == 'storage tank':
            cv2.circle(mask, (int(cx), int(cy)), int(radius / np.sqrt(2)), 1, -1)
        else:
            angle = rng.uniform(0, np.pi)
            for poly in _outline(category, length, width):  # one by one: overlaps stay filled
                cv2.fillPoly(mask, [np.round(_rotate(poly, angle, (cx, cy))).astype(np.int32)], 1)
        region = mask.astype(bool)
        img[region] = COLOURS[colour]
        if category in ('storage tank', 'building', 'tennis court'):  # an inner ring / line
            shade = tuple(int(v * 0.7) for v in COLOURS[colour])
            inner = cv2.erode(mask, np.ones((5, 5), np.uint8))
            inner ^= cv2.erode(inner, np.ones((3, 3), np.uint8))
            img[inner.astype(bool)] = shade
        size_word = (
            'large '
            if length > (lo + hi) / 2 * size * object_scale * 1.05
            else 'small '
            if length < (lo + hi) / 2 * size * object_scale * 0.95
            else ''
        )
        where = _position_words(cx, cy, size)
        template = int(rng.integers(3))
        if template == 0:
            text = f'the {colour} {category} {where}'
        elif template == 1:
            text = f'{colour} {category} {where}'
        else:
            text = f'the {size_word}{colour} {category} {where}'
        objects.append(dict(category=category, colour=colour, text=text, mask=mask))
    return img, objects


def _split_of(index: int, num_images: int) -> str:
    """70 / 15 / 15 split by scene number; every split non-empty from 3 images on."""
    n_val = max(1, round(num_images * 0.15)) if num_images >= 3 else 0
    n_test = n_val
    n_train = num_images - n_val - n_test
    return 'train' if index < n_train else 'val' if index < n_train + n_val else 'test'


def generate(
    out_dir: str,
    num_images: int = 300,
    seed: int = 0,
    size: int = 256,
    formats=('rrsisd', 'refsegrs'),
    jpeg_quality: int = 95,
    verbose: bool = False,
    object_scale: float = 1.0,
):
    """Write the dataset; returns the number of samples (sentences) per split.

    Args:
        out_dir (str): Output root.
        num_images (int): Number of scenes.
        seed (int): Seed; the same seed gives the same files.
        size (int): Image side in pixels.
        formats (Sequence[str]): Any of 'rrsisd', 'refsegrs'.
        jpeg_quality (int): JPEG quality of the RRSIS-D images.
        verbose (bool): Print progress.
        object_scale (float): Multiplies every object's size (see :func:`make_scene`).
    """
    unknown = set(formats) - {'rrsisd', 'refsegrs'}
    if unknown:
        raise ValueError(f'expected formats among rrsisd, refsegrs; found {sorted(unknown)}')
    rrsisd, refsegrs = 'rrsisd' in formats, 'refsegrs' in formats
    img_dir = osp.join(out_dir, 'images', 'rrsisd', 'JPEGImages')
    rs_root = osp.join(out_dir, 'refsegrs')
    if rrsisd:
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(osp.join(out_dir, 'rrsisd'), exist_ok=True)
    if refsegrs:
        os.makedirs(osp.join(rs_root, 'images'), exist_ok=True)
        os.makedirs(osp.join(rs_root, 'masks'), exist_ok=True)
    refs, images, annotations = [], [], []
    phrases = {split: [] for split in SPLITS}
    counts = dict.fromkeys(SPLITS, 0)
    start = time.perf_counter()
    for index in range(num_images):
        img, objects = make_scene(seed, index, size, object_scale)
        split = _split_of(index, num_images)
        file_name = f'{index:05d}.jpg'
        if rrsisd:
            cv2.imwrite(osp.join(img_dir, file_name), img, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            images.append(dict(id=index, file_name=file_name, height=size, width=size))
        if refsegrs:  # one encoding per scene, written once per referred object
            scene_tif = cv2.imencode('.tif', img)[1]
        for k, obj in enumerate(objects):
            counts[split] += 1
            uid = index * 10 + k
            if rrsisd:
                rle = mask_utils.encode(np.asfortranarray(obj['mask']))
                x, y, w, h = (int(v) for v in mask_utils.toBbox(rle))
                annotations.append(
                    dict(
                        id=uid,
                        image_id=index,
                        categories_id=CATEGORIES.index(obj['category']),
                        segmentation=[dict(size=rle['size'], counts=rle['counts'].decode('ascii'))],
                        area=int(mask_utils.area(rle)),
                        bbox=[x, y, x + w, y + h],
                        iscrowd=0,
                    )
                )
                refs.append(
                    dict(
                        ref_id=uid,
                        ann_id=uid,
                        image_id=index,
                        split=split,
                        category_id=CATEGORIES.index(obj['category']),
                        file_name=file_name,
                        sentences=[
                            dict(
                                raw=obj['text'],
                                sent=obj['text'],
                                tokens=obj['text'].split(),
                                sent_id=uid,
                            )
                        ],
                        sent_ids=[uid],
                    )
                )
            if refsegrs:
                sid = f'{index:05d}_{k}'
                scene_tif.tofile(osp.join(rs_root, 'images', f'{sid}.tif'))
                cv2.imwrite(osp.join(rs_root, 'masks', f'{sid}.tif'), obj['mask'] * 255)
                phrases[split].append(f'{sid} {obj["text"]}')
        if verbose and ((index + 1) % max(1, num_images // 10) == 0 or index + 1 == num_images):
            rate = (index + 1) / (time.perf_counter() - start)
            print(
                f'[make_synthetic_rrsis] {index + 1}/{num_images} images ({rate:.0f} images/s)',
                flush=True,
            )
    if rrsisd:
        with open(osp.join(out_dir, 'rrsisd', 'refs(unc).p'), 'wb') as f:
            pickle.dump(refs, f, protocol=2)
        coco = dict(
            images=images,
            annotations=annotations,
            categories=[dict(id=i, name=n) for i, n in enumerate(CATEGORIES)],
        )
        with open(osp.join(out_dir, 'rrsisd', 'instances.json'), 'w') as f:
            json.dump(coco, f)
    if refsegrs:
        for split, lines in phrases.items():
            with open(osp.join(rs_root, f'output_phrase_{split}.txt'), 'w') as f:
                f.write(''.join(line + '\n' for line in lines))
    with open(osp.join(out_dir, 'synthetic_meta.json'), 'w') as f:  # to re-render any scene
        json.dump(
            dict(
                num_images=num_images,
                seed=seed,
                size=size,
                object_scale=object_scale,
                formats=list(formats),
                samples=counts,
            ),
            f,
        )
    return counts


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out_dir', help='output root, e.g. data/synthetic_rrsis')
    parser.add_argument('--format', choices=('rrsisd', 'refsegrs', 'both'), default='both')
    parser.add_argument('--num-images', type=int, default=300)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', type=int, default=256, help='image side in pixels')
    parser.add_argument(
        '--object-scale',
        type=float,
        default=1.0,
        help='multiply object sizes (objects 9-24%% of the image side at 1.0)',
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    formats = ('rrsisd', 'refsegrs') if args.format == 'both' else (args.format,)
    start = time.perf_counter()
    counts = generate(
        args.out_dir,
        args.num_images,
        args.seed,
        args.size,
        formats,
        verbose=True,
        object_scale=args.object_scale,
    )
    seconds = time.perf_counter() - start
    print(
        f'[make_synthetic_rrsis] wrote {args.num_images} images ({formats}) to {args.out_dir} '
        f'in {seconds:.1f} s ({args.num_images / seconds:.0f} images/s); samples per split: '
        f'{counts}'
    )


if __name__ == '__main__':
    main()
