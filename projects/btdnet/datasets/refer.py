"""What the REFER-style loaders share: a refs file, a COCO ``instances.json``, masks as RLE.

RRSIS-D (:class:`~btdnet.datasets.RRSISDDataset`) and gRefCOCO
(:class:`~btdnet.datasets.GRefCOCODataset`) both ship a list of refs (``ref_id``, ``image_id``,
``ann_id``, ``split``, ``sentences``) next to a COCO file holding the images and the instance
masks. This module reads both files, normalises a COCO ``segmentation`` to one compressed RLE,
and holds :class:`ReferCocoDataset`, the base of the two loaders (file checks and the
once-per-dataset reports).
"""

import json
import os.path as osp
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from mmengine.fileio import get_text
from PIL import Image
from pycocotools import mask as mask_utils

from .base import ReferringSegDataset
from .safe_pickle import safe_load_pickle


def segmentation_to_rle(segmentation, height: int, width: int) -> dict:
    """Normalise a COCO ``segmentation`` to one compressed RLE (the union of its parts).

    Accepted forms: a list of RLE dicts (what RRSIS-D ships: one dict, ``counts`` a string), a list
    of polygons (flat ``[x1, y1, x2, y2, ...]`` lists), a bare RLE dict, an uncompressed RLE
    (``counts`` a list of run lengths), or an empty list (an empty mask of the given size).

    Args:
        segmentation (list | dict): The annotation's ``segmentation``.
        height (int): Mask height for polygons and empty lists (the image entry's height).
        width (int): Mask width for polygons and empty lists.

    Returns:
        dict: ``{'size': [h, w], 'counts': bytes}``, decodable by ``pycocotools.mask.decode``.

    Raises:
        ValueError: The segmentation has none of the forms above.
    """
    if isinstance(segmentation, dict):
        parts = [segmentation]
    elif isinstance(segmentation, (list, tuple)):
        parts = list(segmentation)
    else:
        raise ValueError(f'expected a list or an RLE dict, found {type(segmentation).__name__}')
    if not parts:
        return empty_rle(height, width)
    if all(isinstance(p, (list, tuple)) for p in parts):
        rles = _polygon_rles(parts, height, width)
    elif all(isinstance(p, dict) for p in parts):
        rles = [_rle_part(p) for p in parts]
    else:
        raise ValueError(
            'expected a list of RLE dicts or a list of polygons, found a mix of '
            f'{sorted({type(p).__name__ for p in parts})}'
        )
    return merge_rles(rles)


def _polygon_rles(polygons: list, height: int, width: int) -> list:
    """Compressed RLEs of flat ``[x1, y1, x2, y2, ...]`` polygons."""
    for poly in polygons:
        if len(poly) < 6 or len(poly) % 2 or not all(isinstance(v, (int, float)) for v in poly):
            raise ValueError(
                'expected polygons as flat lists of >= 3 (x, y) numbers, found '
                f'one with {len(poly)} values'
            )
    return mask_utils.frPyObjects([list(map(float, p)) for p in polygons], height, width)


def _rle_part(rle: dict) -> dict:
    """One RLE dict (compressed or not) as a compressed RLE with ``bytes`` counts."""
    if 'counts' not in rle or 'size' not in rle or len(rle['size']) != 2:
        raise ValueError(
            f'expected an RLE dict with `size` [h, w] and `counts`, found keys {sorted(rle)}'
        )
    h, w = (int(v) for v in rle['size'])
    counts = rle['counts']
    if isinstance(counts, list):  # uncompressed
        return mask_utils.frPyObjects(dict(size=[h, w], counts=counts), h, w)
    if isinstance(counts, (str, bytes)):
        counts = counts.encode('ascii') if isinstance(counts, str) else counts
        return dict(size=[h, w], counts=counts)
    raise ValueError(f'expected RLE `counts` as str, bytes or list, found {type(counts).__name__}')


def empty_rle(height: int, width: int) -> dict:
    """The compressed RLE of an all-zero ``height`` x ``width`` mask."""
    rle = mask_utils.encode(np.zeros((height, width), np.uint8, order='F'))
    return dict(size=[int(v) for v in rle['size']], counts=rle['counts'])


def merge_rles(rles: list) -> dict:
    """The union of compressed RLEs of one size, as one compressed RLE.

    Args:
        rles (list[dict]): At least one compressed RLE; all of the same ``size``.

    Returns:
        dict: ``{'size': [h, w], 'counts': bytes}``.

    Raises:
        ValueError: The RLEs differ in size.
    """
    if len({tuple(int(v) for v in r['size']) for r in rles}) > 1:
        raise ValueError(f'expected RLE parts of one size, found {[r["size"] for r in rles]}')
    rle = mask_utils.merge(rles) if len(rles) > 1 else rles[0]
    return dict(size=[int(v) for v in rle['size']], counts=rle['counts'])


def _index(items, key: str, path: str, what: str) -> dict:
    """Map ``item[key]`` to each item of a COCO section, checking the key is there."""
    if not isinstance(items, list):
        raise ValueError(f'{path}: expected `{what}` to be a list, found {type(items).__name__}')
    index = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or key not in item:
            raise ValueError(
                f'{path}: expected `{what}[{i}]` to be a dict with `{key}`, found {item!r:.200}'
            )
        index[item[key]] = item
    return index


@dataclass(frozen=True)
class CocoInstances:
    """The parts of a COCO ``instances.json`` a referring loader needs, indexed by id.

    Args:
        path (str): The file they were read from (for messages).
        images (dict): ``image id -> image entry`` (``file_name``, ``height``, ``width``).
        anns (dict): ``annotation id -> annotation`` (``segmentation``, category id).
        cats (dict): ``category id -> category name``.
    """

    path: str
    images: dict
    anns: dict
    cats: dict

    def image(self, image_id, where: str) -> dict:
        """The image entry of ``image_id``; a KeyError naming ``where`` and the file if none."""
        image = self.images.get(image_id)
        if image is None:
            raise KeyError(f'{where} points at image {image_id}, which {self.path} does not have')
        return image

    def annotation(self, ann_id, where: str) -> dict:
        """The annotation ``ann_id``; a KeyError naming ``where`` and the file if none."""
        ann = self.anns.get(ann_id)
        if ann is None:
            raise KeyError(
                f'{where} points at annotation {ann_id}, which {self.path} does not have'
            )
        return ann

    def category_name(self, ann: dict, fallback=None) -> str:
        """The category name of an annotation (``categories_id`` as RRSIS-D spells it, or
        ``category_id``; ``fallback``, e.g. the ref's id, when it has neither)."""
        cat_id = ann.get('categories_id', ann.get('category_id', fallback))
        return self.cats.get(cat_id, str(cat_id))

    def mask_rle(self, ann: dict, image: dict, where: str) -> dict:
        """The annotation's mask as one compressed RLE (polygons drawn at the image entry's size).

        Raises:
            ValueError: A malformed segmentation (naming the annotation, ``where`` and the file).
        """
        try:
            height, width = int(image['height']), int(image['width'])
            return segmentation_to_rle(ann.get('segmentation'), height, width)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f'{self.path}: annotation {ann["id"]} ({where}): {exc}') from exc


def load_coco_instances(path: str, backend_args: dict | None = None) -> CocoInstances:
    """Read a COCO ``instances.json`` (images, annotations, categories) and index it by id.

    Args:
        path (str): Path (or URI understood by ``mmengine.fileio``) of the file.
        backend_args (dict, optional): mmengine file backend arguments.

    Returns:
        CocoInstances: The indexed images, annotations and category names.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not JSON, or lacks one of the three COCO sections.
    """
    try:
        coco = json.loads(get_text(path, backend_args=backend_args))
    except FileNotFoundError:
        raise FileNotFoundError(
            f'Expected the COCO annotations at {path}, found no such file.'
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f'{path}: expected COCO JSON, could not parse it: {exc}') from exc
    if not isinstance(coco, dict):
        raise ValueError(f'{path}: expected a JSON object, found {type(coco).__name__}')
    missing = [k for k in ('images', 'annotations', 'categories') if k not in coco]
    if missing:
        raise ValueError(
            f'{path}: expected the COCO keys images, annotations, categories; missing {missing}'
        )
    cats = _index(coco['categories'], 'id', path, 'categories')
    return CocoInstances(
        path=path,
        images=_index(coco['images'], 'id', path, 'images'),
        anns=_index(coco['annotations'], 'id', path, 'annotations'),
        cats={k: c.get('name', str(k)) for k, c in cats.items()},
    )


def load_refs(path: str, split: str, backend_args: dict | None = None) -> list[dict]:
    """The refs of one split from a refs file: a pickle (``.p`` / ``.pkl``) or JSON.

    Pickles are read with :func:`~btdnet.datasets.safe_pickle.safe_load_pickle` (nothing in them
    runs); any other extension is read as JSON.

    Args:
        path (str): The refs file.
        split (str): The split to keep (``ref['split']``).
        backend_args (dict, optional): mmengine file backend arguments.

    Returns:
        list[dict]: The refs whose ``split`` is ``split``, in file order.

    Raises:
        ValueError: The file holds no list of dicts, or no ref of ``split`` (the message lists
            the splits it holds).
    """
    if path.lower().endswith(('.p', '.pkl', '.pickle')):
        refs = safe_load_pickle(path, backend_args)
    else:
        try:
            refs = json.loads(get_text(path, backend_args=backend_args))
        except FileNotFoundError:
            raise FileNotFoundError(f'Expected the refs at {path}, found no such file.') from None
        except json.JSONDecodeError as exc:
            raise ValueError(f'{path}: expected a JSON list of refs: {exc}') from exc
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise ValueError(f'{path}: expected a list of ref dicts, found {type(refs).__name__}')
    splits = sorted({str(r.get('split')) for r in refs})
    if split not in splits:
        raise ValueError(f'{path}: unknown split {split!r}; the refs hold the splits {splits}')
    return [r for r in refs if r.get('split') == split]


def require_keys(ref: dict, keys, where: str) -> None:
    """Raise a ValueError naming ``where`` if ``ref`` lacks one of ``keys``."""
    for key in keys:
        if key not in ref:
            raise ValueError(f'{where}: expected the key `{key}`, found {sorted(ref)}')


def ref_sentences(ref: dict, where: str) -> list[tuple[str, str]]:
    """``(text, sample_id)`` of each sentence of a ref (``raw``, else ``sent``; ``sent_id``).

    Args:
        ref (dict): A ref with ``sentences``.
        where (str): The file and ref, for messages (``'<file>: ref_id 7'``).

    Raises:
        ValueError: ``sentences`` is not a non-empty list, or a sentence lacks its text or id.
    """
    sentences = ref.get('sentences')
    if not isinstance(sentences, list) or not sentences:
        raise ValueError(f'{where}: expected a non-empty list of sentences, found {sentences!r}')
    out = []
    for sent in sentences:
        text = sent.get('raw', sent.get('sent')) if isinstance(sent, dict) else None
        if not isinstance(text, str) or 'sent_id' not in sent:
            raise ValueError(
                f'{where}: expected sentences with a `raw` string and a `sent_id`, '
                f'found {sent!r:.200}'
            )
        out.append((text, str(sent['sent_id'])))
    return out


class ReferCocoDataset(ReferringSegDataset):
    """Base of the loaders of a refs file + COCO ``instances.json`` (RRSIS-D, gRefCOCO).

    It resolves ``instances_file`` against ``data_root``, and after loading reports once per
    dataset the empty masks of samples that have a target (a defect; samples with
    ``no_target=True`` are expected to be empty and are not counted) and, with ``check_files``,
    checks every image header (a missing image is an error; masks of another size than their
    image are counted in one warning and resized by
    :class:`~btdnet.datasets.transforms.LoadReferringMask`).

    A subclass names its layout's defaults in :attr:`DEFAULT_LAYOUT`.

    Args:
        split (str): The split to load. Default: 'train'.
        ann_file (str, optional): The refs file, relative to ``data_root``. Default: the
            layout's.
        instances_file (str, optional): The COCO file, relative to ``data_root`` (or absolute).
            Default: the layout's.
        data_prefix (dict, optional): ``img_path``: the image folder relative to ``data_root``.
            Default: the layout's.
        check_files (bool): Read every image header at start-up (existence, size).
        **kwargs: Passed to :class:`~btdnet.datasets.base.ReferringSegDataset`.
    """

    #: The layout's ``ann_file``, ``instances_file`` and image folder (``img_path``).
    DEFAULT_LAYOUT = dict(ann_file=None, instances_file=None, img_path='')

    def __init__(
        self,
        split: str = 'train',
        ann_file: str | None = None,
        instances_file: str | None = None,
        data_prefix: dict | None = None,
        check_files: bool = True,
        **kwargs,
    ):
        layout = self.DEFAULT_LAYOUT
        ann_file = ann_file or layout['ann_file']
        instances_file = instances_file or layout['instances_file']
        if data_prefix is None:
            data_prefix = dict(img_path=layout['img_path'])
        data_root = kwargs.get('data_root')
        if data_root is not None and not osp.isabs(instances_file):
            instances_file = osp.join(data_root, instances_file)
        self.instances_file = instances_file
        self.check_files = check_files
        super().__init__(split=split, ann_file=ann_file, data_prefix=data_prefix, **kwargs)

    def _report_masks(self, data_list: list):
        """Warn once about empty masks of targeted samples and masks of another size."""
        empty = [
            d['sample_id']
            for d in data_list
            if not d.get('no_target') and mask_utils.area(d['mask_rle']) == 0
        ]
        if empty:
            self._warn(
                f'{len(empty)} sample(s) have an empty mask and are kept, '
                f'e.g. sample_id {empty[:5]}'
            )
        if self.check_files:
            self._check_image_sizes(data_list)

    def _check_image_sizes(self, data_list: list):
        """Read each image header once; error on a missing image, warn once on size mismatches."""
        sizes, mismatched = {}, defaultdict(list)
        for d in data_list:
            path = d['img_path']
            if path not in sizes:
                sizes[path] = _image_size(path, d['sample_id'])
            if tuple(sizes[path]) != tuple(d['mask_rle']['size']):
                mismatched[path].append(d['sample_id'])
        if mismatched:
            n = sum(map(len, mismatched.values()))
            path, ids = next(iter(mismatched.items()))
            self._warn(
                f'{n} sample(s) ({len(mismatched)} image(s)) have a mask of another size '
                f'than their image; their masks are resized to the image (nearest), e.g. '
                f'{path} {sizes[path]} for sample_id {ids[0]}'
            )


def _image_size(path: str, sample_id) -> tuple[int, int]:
    """(height, width) from an image's header, with errors naming the file and sample."""
    try:
        with Image.open(path) as img:
            return img.size[::-1]
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f'Expected the image of sample_id {sample_id} at {path}, found no such file'
        ) from exc
    except OSError as exc:
        raise OSError(
            f'{path} (sample_id {sample_id}): cannot read the image header: {exc}'
        ) from exc
