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
from collections import Counter
from dataclasses import asdict

import cv2
import numpy as np
import rasterio
from mmengine.logging import print_log
from pycocotools import mask as mask_utils
from rasterio.transform import from_origin

from .generalized import GeneralizedOptions, referring_sentences
from .scenes import CATEGORIES, SPLITS, TASKS, DistractorOptions, make_scene, split_of
from .sentences import distractor_kinds

FORMATS = ('rrsisd', 'refsegrs', 'grefs')
# Where each layout keeps its annotation files and its images, under the output root.
_COCO_LAYOUTS = {
    'rrsisd': ('rrsisd', 'refs(unc).p', osp.join('images', 'rrsisd', 'JPEGImages')),
    'grefs': ('grefs', 'grefs(unc).json', osp.join('images', 'grefs')),
}


def _annotation(uid: int, index: int, obj: dict) -> dict:
    """The COCO annotation of one object (RRSIS-D's keys: ``categories_id``, bbox x1y1x2y2)."""
    rle = mask_utils.encode(np.asfortranarray(obj['mask']))
    x, y, w, h = (int(v) for v in mask_utils.toBbox(rle))
    return dict(
        id=uid,
        image_id=index,
        categories_id=CATEGORIES.index(obj['category']),
        segmentation=[dict(size=rle['size'], counts=rle['counts'].decode('ascii'))],
        area=int(mask_utils.area(rle)),
        bbox=[x, y, x + w, y + h],
        iscrowd=0,
    )


def _ref(sent_id: int, ann_ids: list, cat_ids: list, index: int, split: str, text: str) -> dict:
    """A REFER-style ref with one sentence; ``ann_ids`` / ``cat_ids`` lists (gRefCOCO)."""
    return dict(
        ref_id=sent_id,
        ann_id=ann_ids,
        image_id=index,
        split=split,
        category_id=cat_ids,
        file_name=f'{index:05d}.jpg',
        sentences=[dict(raw=text, sent=text, tokens=text.split(), sent_id=sent_id)],
        sent_ids=[sent_id],
    )


class _DatasetWriter:
    """Collects a dataset's layouts scene by scene (:meth:`add`) and writes them (:meth:`close`).

    Sample ids: sentence ``j`` of scene ``i`` is ``10 i + j`` (``100 i + j`` for the generalized
    task, whose scenes have more sentences); object ``k``'s annotation is ``10 i + k``.
    """

    def __init__(self, out_dir: str, formats, jpeg_quality: int, generalized: bool):
        self.out_dir, self.formats, self.quality = out_dir, tuple(formats), jpeg_quality
        self.stride = 100 if generalized else 10
        self.images, self.annotations, self.records = [], [], []
        self.refs = {f: [] for f in _COCO_LAYOUTS if f in self.formats}
        self.phrases = {split: [] for split in SPLITS}
        for fmt, (ann_dir, _, img_dir) in _COCO_LAYOUTS.items():
            if fmt in self.formats:
                os.makedirs(osp.join(out_dir, ann_dir), exist_ok=True)
                os.makedirs(osp.join(out_dir, img_dir), exist_ok=True)
        if 'refsegrs' in self.formats:
            for folder in ('images', 'masks'):
                os.makedirs(osp.join(out_dir, 'refsegrs', folder), exist_ok=True)

    def add(self, index: int, split: str, img: np.ndarray, objects: list, sentences: list):
        """One scene: its image, its objects' annotations and one sample per sentence."""
        file_name = f'{index:05d}.jpg'
        for fmt in self.refs:
            path = osp.join(self.out_dir, _COCO_LAYOUTS[fmt][2], file_name)
            cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        size = img.shape[0]
        self.images.append(dict(id=index, file_name=file_name, height=size, width=size))
        self.annotations += [_annotation(index * 10 + k, index, o) for k, o in enumerate(objects)]
        if 'refsegrs' in self.formats:  # one encoding per scene, written once per sentence
            scene_tif = cv2.imencode('.tif', img)[1]
        for j, sentence in enumerate(sentences):
            sent_id = index * self.stride + j
            targets = [objects[k] for k in sentence.targets]
            ann_ids = [index * 10 + k for k in sentence.targets] or [-1]
            cat_ids = [CATEGORIES.index(o['category']) for o in targets] or [-1]
            if 'rrsisd' in self.refs:
                ref = _ref(sent_id, ann_ids[0], cat_ids[0], index, split, sentence.text)
                self.refs['rrsisd'].append(ref)
            if 'grefs' in self.refs:
                ref = _ref(sent_id, ann_ids, cat_ids, index, split, sentence.text)
                self.refs['grefs'].append({**ref, 'no_target': not targets})
            if 'refsegrs' in self.formats:
                sid = f'{index:05d}_{j}'
                root = osp.join(self.out_dir, 'refsegrs')
                scene_tif.tofile(osp.join(root, 'images', f'{sid}.tif'))
                cv2.imwrite(osp.join(root, 'masks', f'{sid}.tif'), targets[0]['mask'] * 255)
                self.phrases[split].append(f'{sid} {sentence.text}')
            self.records.append(self._record(sent_id, index, j, split, sentence, targets))

    @staticmethod
    def _record(sent_id, index, j, split, sentence, targets) -> dict:
        """``synthetic_objects.json``'s entry: a one-target sentence keeps its target's
        attributes (``colour``, ``category``, ``centre``, ``named``)."""
        one = targets[0] if len(targets) == 1 else {}
        return dict(
            sent_id=str(sent_id),
            refsegrs_id=f'{index:05d}_{j}',
            image_id=index,
            split=split,
            text=sentence.text,
            kind=sentence.kind,
            targets=list(sentence.targets),
            colour=one.get('colour'),
            category=one.get('category'),
            centre=[round(float(v), 4) for v in one['centre']] if one else None,
            named=list(one['named']) if one else None,
        )

    def close(self):
        coco = dict(
            images=self.images,
            annotations=self.annotations,
            categories=[dict(id=i, name=n) for i, n in enumerate(CATEGORIES)],
        )
        for fmt, refs in self.refs.items():
            ann_dir, refs_name, _ = _COCO_LAYOUTS[fmt]
            with open(osp.join(self.out_dir, ann_dir, 'instances.json'), 'w') as f:
                json.dump(coco, f)
            if refs_name.endswith('.p'):
                with open(osp.join(self.out_dir, ann_dir, refs_name), 'wb') as f:
                    pickle.dump(refs, f, protocol=2)
            else:
                with open(osp.join(self.out_dir, ann_dir, refs_name), 'w') as f:
                    json.dump(refs, f)
        if 'refsegrs' in self.formats:
            for split, lines in self.phrases.items():
                path = osp.join(self.out_dir, 'refsegrs', f'output_phrase_{split}.txt')
                with open(path, 'w') as f:
                    f.write(''.join(line + '\n' for line in lines))
        with open(osp.join(self.out_dir, 'synthetic_objects.json'), 'w') as f:
            json.dump(self.records, f)


def _check_arguments(num_images, eval_images, task, options, generalized, formats):
    if task not in TASKS:
        raise ValueError(f'task: expected one of {TASKS}, found {task!r}')
    if eval_images is not None and not 0 <= 2 * eval_images < num_images:
        raise ValueError(
            f'eval_images: expected 0 <= eval_images and 2 x eval_images < num_images '
            f'({num_images}) so that training keeps a scene; found {eval_images}'
        )
    if options is not None and task not in ('distractors', 'generalized'):
        raise ValueError(
            f"options: only task='distractors' or 'generalized' takes them, found task={task!r}"
        )
    if generalized is not None and task != 'generalized':
        raise ValueError(f"generalized: only task='generalized' takes it, found task={task!r}")
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f'expected formats among {", ".join(FORMATS)}; found {sorted(unknown)}')
    if task == 'generalized' and set(formats) != {'grefs'}:
        raise ValueError(
            "task='generalized' has sentences with no target or several: only the gRefCOCO "
            f"layout (formats=('grefs',)) holds them, found formats {tuple(formats)}"
        )


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
    generalized: GeneralizedOptions | None = None,
):
    """Write the dataset; returns the number of samples (sentences) per split.

    Besides the layouts, ``OUT/synthetic_meta.json`` keeps the arguments (to re-render any scene
    with :func:`make_scene` and :func:`~.generalized.referring_sentences`), the samples per
    split and tallies over all sentences: their kinds (``kinds``: one target, several, no
    target by kind), what the one-target ones name (``named``) and which distractors their
    targets have (``distractors``, see :func:`distractor_kinds`).
    ``OUT/synthetic_objects.json`` lists every sentence: ``sent_id`` (the sample id),
    ``refsegrs_id``, ``image_id``, ``split``, ``text``, ``kind``, ``targets`` (object indices)
    and, for a one-target sentence, its target's ``colour``, ``category``, ``centre`` and
    ``named``.

    Args:
        out_dir (str): Output root.
        num_images (int): Number of scenes.
        seed (int): Seed; the same seed gives the same files.
        size (int): Image side in pixels.
        formats (Sequence[str]): Any of 'rrsisd', 'refsegrs', 'grefs' (the gRefCOCO layout:
            ``OUT/grefs/grefs(unc).json``, ``OUT/grefs/instances.json``, ``OUT/images/grefs/``).
        jpeg_quality (int): JPEG quality of the images of the COCO layouts.
        verbose (bool): Log progress.
        object_scale (float): Multiplies every object's size (see :func:`make_scene`).
        task (str): ``'colours'``, ``'distractors'`` or ``'generalized'`` (see
            :func:`make_scene`); ``'generalized'`` writes the gRefCOCO layout only.
        options (DistractorOptions, optional): Settings of the distractor task (and of the
            generalized task's scenes).
        eval_images (int, optional): Scenes in each of val and test (the last ones); the rest
            train. None (default): 15% each. The CPU demo trains on many scenes and keeps its
            val and test small, since it validates during its short training.
        generalized (GeneralizedOptions, optional): Shares of the generalized task's no-target
            and several-target sentences; None for the defaults.
    """
    _check_arguments(num_images, eval_images, task, options, generalized, formats)
    options = options or DistractorOptions()
    if task == 'generalized':
        generalized = generalized or GeneralizedOptions()
    writer = _DatasetWriter(out_dir, formats, jpeg_quality, generalized is not None)
    counts = dict.fromkeys(SPLITS, 0)
    named_counts, kind_counts = Counter(), dict.fromkeys(('category', 'colour', 'twin'), 0)
    sentence_kinds = Counter()
    start = time.perf_counter()
    for index in range(num_images):
        img, objects = make_scene(seed, index, size, object_scale, task, options)
        sentences = referring_sentences(seed, index, objects, generalized)
        split = split_of(index, num_images, eval_images)
        writer.add(index, split, img, objects, sentences)
        counts[split] += len(sentences)
        sentence_kinds.update(s.kind for s in sentences)
        named_counts.update('+'.join(o['named']) for o in objects)
        for k in range(len(objects)):
            for kind in distractor_kinds(k, objects):
                kind_counts[kind] += 1
        if verbose and ((index + 1) % max(1, num_images // 10) == 0 or index + 1 == num_images):
            rate = (index + 1) / (time.perf_counter() - start)
            print_log(
                f'synthetic dataset: {index + 1}/{num_images} images ({rate:.0f} images/s)',
                logger='current',
            )
    writer.close()
    meta = dict(
        num_images=num_images,
        eval_images=eval_images,
        seed=seed,
        size=size,
        object_scale=object_scale,
        formats=list(formats),
        samples=counts,
        task=task,
        kinds=dict(sorted(sentence_kinds.items())),
        named=dict(sorted(named_counts.items())),
        distractors=kind_counts,
    )
    if task != 'colours':
        meta['options'] = asdict(options)
    if generalized is not None:
        meta['generalized'] = asdict(generalized)
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
