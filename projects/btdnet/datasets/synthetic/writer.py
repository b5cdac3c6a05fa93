"""Synthetic scenes to disk: referring datasets in the benchmarks' layouts, GeoTIFF mosaics.

:func:`generate` writes a dataset (the command line is
``tools/dataset_converters/make_synthetic_rrsis.py``)::

    OUT/rrsisd/refs(unc).p, OUT/rrsisd/instances.json, OUT/images/rrsisd/JPEGImages/*.jpg
    OUT/refsegrs/images/<id>.tif, OUT/refsegrs/masks/<id>.tif (0/255),
    OUT/refsegrs/output_phrase_{train,val,test}.txt
    OUT/synthetic_meta.json, OUT/synthetic_objects.json

:func:`write_scene` writes a georeferenced mosaic of scenes as one GeoTIFF (the command line is
``tools/dataset_converters/make_synthetic_scene.py``).
"""

import json
import os
import os.path as osp
import pickle
import time
from dataclasses import asdict

import cv2
import numpy as np
import rasterio
from mmengine.logging import print_log
from pycocotools import mask as mask_utils
from rasterio.transform import from_origin

from .scenes import CATEGORIES, SPLITS, TASKS, DistractorOptions, make_scene, split_of
from .sentences import distractor_kinds


def generate(
    out_dir: str,
    num_images: int = 300,
    seed: int = 0,
    size: int = 256,
    formats=('rrsisd', 'refsegrs'),
    jpeg_quality: int = 95,
    verbose: bool = False,
    object_scale: float = 1.0,
    task: str = 'colours',
    options: DistractorOptions | None = None,
    eval_images: int | None = None,
):
    """Write the dataset; returns the number of samples (sentences) per split.

    Besides the layouts, ``OUT/synthetic_meta.json`` keeps the arguments (to re-render any scene
    with :func:`make_scene`), the samples per split and two tallies over all sentences: what
    they name (``named``) and which distractors their targets have (``distractors``, see
    :func:`distractor_kinds`). ``OUT/synthetic_objects.json`` lists every sentence with its
    target's attributes: ``sent_id`` (the RRSIS-D layout's sample id), ``refsegrs_id``,
    ``image_id``, ``split``, ``text``, ``colour``, ``category``, ``centre`` and ``named``.

    Args:
        out_dir (str): Output root.
        num_images (int): Number of scenes.
        seed (int): Seed; the same seed gives the same files.
        size (int): Image side in pixels.
        formats (Sequence[str]): Any of 'rrsisd', 'refsegrs'.
        jpeg_quality (int): JPEG quality of the RRSIS-D images.
        verbose (bool): Print progress.
        object_scale (float): Multiplies every object's size (see :func:`make_scene`).
        task (str): ``'colours'`` or ``'distractors'`` (see :func:`make_scene`).
        options (DistractorOptions, optional): Settings of the distractor task.
        eval_images (int, optional): Scenes in each of val and test (the last ones); the rest
            train. None (default): 15% each. The CPU demo trains on many scenes and keeps its
            val and test small, since it validates during its short training.
    """
    if task not in TASKS:
        raise ValueError(f'task: expected one of {TASKS}, found {task!r}')
    if eval_images is not None and not 0 <= 2 * eval_images < num_images:
        raise ValueError(
            f'eval_images: expected 0 <= eval_images and 2 x eval_images < num_images '
            f'({num_images}) so that training keeps a scene; found {eval_images}'
        )
    if options is not None and task != 'distractors':
        raise ValueError(f"options: only task='distractors' takes them, found task={task!r}")
    options = options or DistractorOptions()
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
    named_counts, kind_counts, records = {}, dict.fromkeys(('category', 'colour', 'twin'), 0), []
    start = time.perf_counter()
    for index in range(num_images):
        img, objects = make_scene(seed, index, size, object_scale, task, options)
        split = split_of(index, num_images, eval_images)
        file_name = f'{index:05d}.jpg'
        if rrsisd:
            cv2.imwrite(osp.join(img_dir, file_name), img, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            images.append(dict(id=index, file_name=file_name, height=size, width=size))
        if refsegrs:  # one encoding per scene, written once per referred object
            scene_tif = cv2.imencode('.tif', img)[1]
        for k, obj in enumerate(objects):
            counts[split] += 1
            uid = index * 10 + k
            named = '+'.join(obj['named'])
            named_counts[named] = named_counts.get(named, 0) + 1
            for kind in distractor_kinds(k, objects):
                kind_counts[kind] += 1
            records.append(
                dict(
                    sent_id=str(uid),
                    refsegrs_id=f'{index:05d}_{k}',
                    image_id=index,
                    split=split,
                    text=obj['text'],
                    colour=obj['colour'],
                    category=obj['category'],
                    centre=[round(float(v), 4) for v in obj['centre']],
                    named=list(obj['named']),
                )
            )
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
            print_log(
                f'synthetic dataset: {index + 1}/{num_images} images ({rate:.0f} images/s)',
                logger='current',
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
    with open(osp.join(out_dir, 'synthetic_objects.json'), 'w') as f:
        json.dump(records, f)
    meta = dict(
        num_images=num_images,
        eval_images=eval_images,
        seed=seed,
        size=size,
        object_scale=object_scale,
        formats=list(formats),
        samples=counts,
        task=task,
        named=dict(sorted(named_counts.items())),
        distractors=kind_counts,
    )
    if task == 'distractors':
        meta['options'] = asdict(options)
    with open(osp.join(out_dir, 'synthetic_meta.json'), 'w') as f:  # to re-render any scene
        json.dump(meta, f)
    return counts


def write_scene(
    path: str,
    size: int,
    patch: int = 512,
    seed: int = 0,
    object_scale: float = 1.0,
    dtype: str = 'uint16',
    nodata_border: float = 0.0,
    pixel_size: float = 0.5,
    crs: str = 'EPSG:32633',
    task: str = 'colours',
) -> list:
    """Write the mosaic; returns ``(row, column, category, colour, sentence)`` per object."""
    if dtype not in ('uint8', 'uint16'):
        raise ValueError(f'--dtype: expected uint8 or uint16, found {dtype!r}')
    border = int(round(nodata_border * size))
    columns = -(-size // patch)
    profile = dict(
        driver='GTiff',
        height=size,
        width=size,
        count=3,
        dtype=dtype,
        crs=crs,
        transform=from_origin(500000.0, 4100000.0, pixel_size, pixel_size),
        nodata=0,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress='deflate',
        predictor=2,
        photometric='RGB',
        BIGTIFF='IF_SAFER',
    )
    objects = []
    with rasterio.open(path, 'w', **profile) as dst:
        for r in range(columns):
            rows = min(patch, size - r * patch)
            strip = np.zeros((rows, size, 3), np.uint8)
            for c in range(columns):
                image, found = make_scene(seed, r * columns + c, patch, object_scale, task)
                width = min(patch, size - c * patch)
                strip[:, c * patch : c * patch + width] = image[:rows, :width]
                objects += [(r, c, o['category'], o['colour'], o['text']) for o in found]
            rgb = strip[..., ::-1].transpose(2, 0, 1)
            if dtype == 'uint16':
                data = rgb.astype(np.uint16) * 64 + 500
            else:
                data = np.maximum(rgb, 1)
            y0 = r * patch
            ys = np.arange(y0, y0 + rows)
            blank_rows = (ys < border) | (ys >= size - border)
            data[:, blank_rows] = 0
            if border:
                data[:, :, :border] = 0
                data[:, :, size - border :] = 0
            dst.write(data, window=((y0, y0 + rows), (0, size)))
    return objects
