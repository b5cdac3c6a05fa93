"""Generalized referring expressions in the gRefCOCO layout (GRES, Liu et al., CVPR 2023)."""

import os.path as osp

from mmengine.logging import print_log
from mmseg.registry import DATASETS

from .refer import (
    CocoInstances,
    ReferCocoDataset,
    empty_rle,
    load_coco_instances,
    load_refs,
    merge_rles,
    ref_sentences,
    require_keys,
)

NO_TARGET_CATEGORY = 'no target'
# The `ann_id` value that marks a ref without target (as a scalar or as the list's only item).
NO_TARGET_ANN_ID = -1


def ref_ann_ids(ref: dict, where: str) -> tuple:
    """The distinct annotation ids a ref points at, in order; ``()`` for a ref without target.

    ``ann_id`` may be a scalar or a list. A ref has no target when ``ann_id`` is ``-1`` or
    ``[-1]``, or when ``no_target`` is true (gRefCOCO sets both; with ``no_target`` true,
    ``ann_id`` may also be absent or ``[]``).

    Args:
        ref (dict): A ref with ``ann_id`` and / or ``no_target``.
        where (str): The file and ref, for messages.

    Raises:
        ValueError: ``no_target`` is not a bool; ``ann_id`` is missing, is not an int or a
            non-empty list of ints, mixes -1 with annotation ids, or names annotations while
            ``no_target`` is true.
    """
    no_target = ref.get('no_target', False)
    if not isinstance(no_target, bool):
        raise ValueError(f'{where}: expected `no_target` true or false, found {no_target!r}')
    raw = ref.get('ann_id')
    if raw is None and not no_target:
        raise ValueError(f'{where}: expected the key `ann_id`, found {sorted(ref)}')
    ids = [] if raw is None else list(raw) if isinstance(raw, (list, tuple)) else [raw]
    if no_target and ids in ([], [NO_TARGET_ANN_ID]):
        return ()
    if no_target:
        raise ValueError(f'{where}: `no_target` is true but `ann_id` names annotations {raw!r}')
    if not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(
            f'{where}: expected `ann_id` as an int or a non-empty list of ints ([-1] for no '
            f'target), found {raw!r:.200}'
        )
    if NO_TARGET_ANN_ID in ids:
        if len(ids) > 1:
            raise ValueError(
                f'{where}: expected `ann_id` [-1] (no target) or annotation ids, found -1 among '
                f'{ids}'
            )
        return ()
    return tuple(dict.fromkeys(ids))


@DATASETS.register_module()
class GRefCOCODataset(ReferCocoDataset):
    """Generalized referring segmentation: a sentence may refer to no, one or several objects.

    The gRefCOCO layout, as GRES / ReLA read it::

        data_root/grefcoco/grefs(unc).json   list of refs: ref_id, image_id, split, ann_id and
                                             category_id (each a scalar or a list), sentences
                                             [{raw, sent, sent_id, ...}], optional no_target
        data_root/grefcoco/instances.json    COCO: images, annotations (polygons or RLE),
                                             categories
        data_root/images/train2014/<file_name>   file_name from the instances.json image entry

    Alternatives: the refs as a pickle (``ann_file='grefcoco/grefs(unc).p'``, read with
    :func:`~btdnet.datasets.safe_pickle.safe_load_pickle`: nothing in it runs); another set in the
    same layout, e.g. ``ann_file='<name>/grefs(unc).json'``,
    ``instances_file='<name>/instances.json'``, ``data_prefix=dict(img_path='<images>')``.
    gRefCOCO's splits are train, val, testA and testB.

    Each sentence is one sample, a dict with ``img_path``, ``text``, ``sample_id``
    (``str(sent_id)``), ``ref_id``, ``mask_rle`` (one compressed RLE: the union of the ref's
    instances; all zero, of the image entry's size, for a ref without target), ``no_target``
    (bool), ``num_targets`` (distinct annotations; 0 for no target), ``seg_fields=[]``,
    ``reduce_zero_label=False`` and ``category``: the instance category's name; for several
    categories their names sorted and joined with ``' + '`` (``'dog + person'``), so a
    per-category table keeps multi-category refs apart; ``'no target'`` for a ref without target.

    A ref has no target when ``ann_id`` is ``-1`` / ``[-1]`` or ``no_target`` is true. Such
    samples are expected: they are counted in one info line per dataset (``N of M samples have
    no target, K several``), not warned about. An empty mask on a sample *with* a target is a
    defect and is counted in one warning.

    Args:
        split (str): 'train', 'val', 'testA' or 'testB' (any split the refs hold).
            Default: 'train'.
        ann_file (str): The refs file (``.json``, or ``.p`` / ``.pkl`` for a pickle), relative to
            ``data_root``. Default: 'grefcoco/grefs(unc).json'.
        instances_file (str): The COCO file, relative to ``data_root``.
            Default: 'grefcoco/instances.json'.
        data_prefix (dict): ``img_path``: the image folder relative to ``data_root``.
            Default: dict(img_path='images/train2014').
        check_files (bool): Read every image header at start-up (existence, size). Default: True.
        **kwargs: Passed to :class:`~btdnet.datasets.base.ReferringSegDataset`.
    """

    DEFAULT_LAYOUT = dict(
        ann_file='grefcoco/grefs(unc).json',
        instances_file='grefcoco/instances.json',
        img_path='images/train2014',
    )

    def load_data_list(self) -> list[dict]:
        refs = load_refs(self.ann_file, self.split, self.backend_args)
        coco = load_coco_instances(self.instances_file, self.backend_args)
        data_list = []
        for ref in refs:
            data_list.extend(self._ref_samples(ref, coco))
        self._report_empty_sentences(data_list)
        self._report_masks(data_list)
        self._report_targets(data_list)
        return data_list

    def _ref_samples(self, ref: dict, coco: CocoInstances) -> list[dict]:
        """The samples (one per sentence) of one ref."""
        where = f'{self.ann_file}: ref_id {ref.get("ref_id")}'
        require_keys(ref, ('image_id', 'sentences'), where)
        ann_ids = ref_ann_ids(ref, where)
        image = coco.image(ref['image_id'], where)
        anns = [coco.annotation(ann_id, where) for ann_id in ann_ids]
        rle = self._union_mask(coco, anns, image, ref.get('ref_id'))
        if anns:
            category = ' + '.join(sorted({coco.category_name(a, _ref_category(ref)) for a in anns}))
        else:
            category = NO_TARGET_CATEGORY
        img_path = osp.join(self.data_prefix.get('img_path', ''), image['file_name'])
        return [
            dict(
                img_path=img_path,
                text=text,
                category=category,
                sample_id=sample_id,
                ref_id=ref.get('ref_id'),
                mask_rle=rle,
                no_target=not anns,
                num_targets=len(anns),
                seg_fields=[],
                reduce_zero_label=False,
            )
            for text, sample_id in ref_sentences(ref, where)
        ]

    def _union_mask(self, coco: CocoInstances, anns: list, image: dict, ref_id) -> dict:
        """The union of the annotations' masks; all zero of the image's size if there are none."""
        if not anns:
            return empty_rle(int(image['height']), int(image['width']))
        rles = [coco.mask_rle(ann, image, f'ref_id {ref_id}') for ann in anns]
        try:
            return merge_rles(rles)
        except ValueError as exc:
            raise ValueError(
                f'{coco.path}: the annotations {[a["id"] for a in anns]} of ref_id {ref_id} '
                f'({self.ann_file}): {exc}'
            ) from exc

    def _report_targets(self, data_list: list):
        """One info line: how many samples have no target and how many several."""
        none = sum(d['no_target'] for d in data_list)
        several = sum(d['num_targets'] > 1 for d in data_list)
        print_log(
            f'{type(self).__name__} ({self.split}): {none} of {len(data_list)} samples have no '
            f'target, {several} several',
            logger='current',
        )


def _ref_category(ref: dict):
    """The ref's own ``category_id`` when it is a scalar (the fallback of an annotation that
    names no category), else None."""
    cat = ref.get('category_id')
    return None if isinstance(cat, (list, tuple)) else cat
