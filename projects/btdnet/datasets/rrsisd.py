"""RRSIS-D in its REFER layout (RMSIN, CVPR 2024)."""

import json
import os.path as osp
from collections import defaultdict

import numpy as np
from mmengine.fileio import get_text
from mmseg.registry import DATASETS
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
        return mask_utils.encode(np.zeros((height, width), np.uint8, order='F'))
    rles = []
    if all(isinstance(p, (list, tuple)) for p in parts):  # polygons
        for poly in parts:
            if len(poly) < 6 or len(poly) % 2 or not all(isinstance(v, (int, float)) for v in poly):
                raise ValueError(
                    'expected polygons as flat lists of >= 3 (x, y) numbers, found '
                    f'one with {len(poly)} values'
                )
        rles = mask_utils.frPyObjects([list(map(float, p)) for p in parts], height, width)
    elif all(isinstance(p, dict) for p in parts):
        for rle in parts:
            if 'counts' not in rle or 'size' not in rle or len(rle['size']) != 2:
                raise ValueError(
                    f'expected an RLE dict with `size` [h, w] and `counts`, found '
                    f'keys {sorted(rle)}'
                )
            h, w = (int(v) for v in rle['size'])
            counts = rle['counts']
            if isinstance(counts, list):  # uncompressed
                rles.append(mask_utils.frPyObjects(dict(size=[h, w], counts=counts), h, w))
            elif isinstance(counts, (str, bytes)):
                counts = counts.encode('ascii') if isinstance(counts, str) else counts
                rles.append(dict(size=[h, w], counts=counts))
            else:
                raise ValueError(
                    f'expected RLE `counts` as str, bytes or list, found {type(counts).__name__}'
                )
        if len({tuple(r['size']) for r in rles}) > 1:
            raise ValueError(f'expected RLE parts of one size, found {[r["size"] for r in rles]}')
    else:
        raise ValueError(
            'expected a list of RLE dicts or a list of polygons, found a mix of '
            f'{sorted({type(p).__name__ for p in parts})}'
        )
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


@DATASETS.register_module()
class RRSISDDataset(ReferringSegDataset):
    """RRSIS-D: referring expressions over 800x800 aerial JPEGs, in the REFER layout.

    ::

        data_root/rrsisd/refs(unc).p       list of refs: ref_id, ann_id, image_id, split,
                                           category_id, sentences [{raw, sent, tokens, sent_id}]
        data_root/rrsisd/instances.json    COCO: images, annotations (segmentation), categories
        data_root/images/rrsisd/JPEGImages/<file_name>

    One sample per sentence, with ``sample_id = str(sent_id)`` and the mask source
    ``mask_rle`` (one compressed RLE, the union of the annotation's parts, see
    :func:`segmentation_to_rle`). The pickle is read with
    :func:`~btdnet.datasets.safe_pickle.safe_load_pickle`: nothing in it runs.

    RRSIS-D ships some 800x801 / 800x787 / 800x802 JPEGs with 800x800 masks; with
    ``check_files=True`` the image headers are read once at start-up, a missing image is an error,
    and one warning says how many samples have a mask of another size than their image
    (:class:`~btdnet.datasets.transforms.LoadReferringMask` resizes those masks to the image,
    nearest neighbour). Empty masks are kept and counted in one warning.

    Args:
        split (str): 'train', 'val' or 'test' (any split the refs hold). Default: 'train'.
        ann_file (str): The refs pickle, relative to ``data_root``. Default: 'rrsisd/refs(unc).p'.
        instances_file (str): The COCO file, relative to ``data_root``.
            Default: 'rrsisd/instances.json'.
        data_prefix (dict): ``img_path``: the image folder relative to ``data_root``.
            Default: dict(img_path='images/rrsisd/JPEGImages').
        check_files (bool): Read every image header at start-up (existence, size). Default: True.
        **kwargs: Passed to :class:`~btdnet.datasets.base.ReferringSegDataset`.
    """

    def __init__(
        self,
        split: str = 'train',
        ann_file: str = 'rrsisd/refs(unc).p',
        instances_file: str = 'rrsisd/instances.json',
        data_prefix: dict | None = None,
        check_files: bool = True,
        **kwargs,
    ):
        if data_prefix is None:
            data_prefix = dict(img_path='images/rrsisd/JPEGImages')
        data_root = kwargs.get('data_root')
        if data_root is not None and not osp.isabs(instances_file):
            instances_file = osp.join(data_root, instances_file)
        self.instances_file = instances_file
        self.check_files = check_files
        super().__init__(split=split, ann_file=ann_file, data_prefix=data_prefix, **kwargs)

    def _load_instances(self):
        path = self.instances_file
        try:
            coco = json.loads(get_text(path, backend_args=self.backend_args))
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
        images = _index(coco['images'], 'id', path, 'images')
        anns = _index(coco['annotations'], 'id', path, 'annotations')
        cats = {
            k: c.get('name', str(k))
            for k, c in _index(coco['categories'], 'id', path, 'categories').items()
        }
        return images, anns, cats

    def load_data_list(self) -> list[dict]:
        refs = safe_load_pickle(self.ann_file, self.backend_args)
        if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
            raise ValueError(
                f'{self.ann_file}: expected a list of ref dicts, found {type(refs).__name__}'
            )
        splits = sorted({str(r.get('split')) for r in refs})
        if self.split not in splits:
            raise ValueError(
                f'{self.ann_file}: unknown split {self.split!r}; the refs hold the splits {splits}'
            )
        images, anns, cats = self._load_instances()
        img_root = self.data_prefix.get('img_path', '')
        data_list = []
        for ref in refs:
            if ref.get('split') != self.split:
                continue
            where = f'{self.ann_file}: ref_id {ref.get("ref_id")}'
            for key in ('ann_id', 'image_id', 'sentences'):
                if key not in ref:
                    raise ValueError(f'{where}: expected the key `{key}`, found {sorted(ref)}')
            ann = anns.get(ref['ann_id'])
            if ann is None:
                raise KeyError(
                    f'{where} points at annotation {ref["ann_id"]}, which '
                    f'{self.instances_file} does not have'
                )
            image = images.get(ref['image_id'])
            if image is None:
                raise KeyError(
                    f'{where} points at image {ref["image_id"]}, which '
                    f'{self.instances_file} does not have'
                )
            try:
                rle = segmentation_to_rle(
                    ann.get('segmentation'), int(image['height']), int(image['width'])
                )
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(
                    f'{self.instances_file}: annotation {ann["id"]} (ref_id '
                    f'{ref.get("ref_id")}): {exc}'
                ) from exc
            cat_id = ann.get('categories_id', ann.get('category_id', ref.get('category_id')))
            category = cats.get(cat_id, str(cat_id))
            for sent in ref['sentences']:
                text = sent.get('raw', sent.get('sent'))
                if not isinstance(text, str) or 'sent_id' not in sent:
                    raise ValueError(
                        f'{where}: expected sentences with a `raw` string and a '
                        f'`sent_id`, found {sent!r:.200}'
                    )
                data_list.append(
                    dict(
                        img_path=osp.join(img_root, image['file_name']),
                        text=text,
                        category=category,
                        sample_id=str(sent['sent_id']),
                        ref_id=ref.get('ref_id'),
                        mask_rle=rle,
                        seg_fields=[],
                        reduce_zero_label=False,
                    )
                )
        self._report_empty_sentences(data_list)
        self._report_masks(data_list)
        return data_list

    def _report_masks(self, data_list: list):
        """Warn once about empty masks and masks whose size differs from their image's."""
        empty = [d['sample_id'] for d in data_list if mask_utils.area(d['mask_rle']) == 0]
        if empty:
            self._warn(
                f'{len(empty)} sample(s) have an empty mask and are kept, '
                f'e.g. sample_id {empty[:5]}'
            )
        if not self.check_files:
            return
        sizes, mismatched = {}, defaultdict(list)
        for d in data_list:
            path = d['img_path']
            if path not in sizes:
                try:
                    with Image.open(path) as img:
                        sizes[path] = img.size[::-1]
                except FileNotFoundError as exc:
                    raise FileNotFoundError(
                        f'Expected the image of sample_id {d["sample_id"]} '
                        f'at {path}, found no such file'
                    ) from exc
                except OSError as exc:
                    raise OSError(
                        f'{path} (sample_id {d["sample_id"]}): cannot read the image header: {exc}'
                    ) from exc
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
