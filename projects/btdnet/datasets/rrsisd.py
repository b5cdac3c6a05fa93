"""RRSIS-D in its REFER layout (RMSIN, CVPR 2024)."""

import os.path as osp

from mmseg.registry import DATASETS

from .refer import ReferCocoDataset, load_coco_instances, load_refs, ref_sentences, require_keys


@DATASETS.register_module()
class RRSISDDataset(ReferCocoDataset):
    """RRSIS-D: referring expressions over 800x800 aerial JPEGs, in the REFER layout.

    ::

        data_root/rrsisd/refs(unc).p       list of refs: ref_id, ann_id, image_id, split,
                                           category_id, sentences [{raw, sent, tokens, sent_id}]
        data_root/rrsisd/instances.json    COCO: images, annotations (segmentation), categories
        data_root/images/rrsisd/JPEGImages/<file_name>

    One sample per sentence, with ``sample_id = str(sent_id)`` and the mask source
    ``mask_rle`` (one compressed RLE, the union of the annotation's parts, see
    :func:`~btdnet.datasets.refer.segmentation_to_rle`). The pickle is read with
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

    DEFAULT_LAYOUT = dict(
        ann_file='rrsisd/refs(unc).p',
        instances_file='rrsisd/instances.json',
        img_path='images/rrsisd/JPEGImages',
    )

    def load_data_list(self) -> list[dict]:
        refs = load_refs(self.ann_file, self.split, self.backend_args)
        coco = load_coco_instances(self.instances_file, self.backend_args)
        img_root = self.data_prefix.get('img_path', '')
        data_list = []
        for ref in refs:
            where = f'{self.ann_file}: ref_id {ref.get("ref_id")}'
            require_keys(ref, ('ann_id', 'image_id', 'sentences'), where)
            ann = coco.annotation(ref['ann_id'], where)
            image = coco.image(ref['image_id'], where)
            rle = coco.mask_rle(ann, image, f'ref_id {ref.get("ref_id")}')
            category = coco.category_name(ann, ref.get('category_id'))
            for text, sample_id in ref_sentences(ref, where):
                data_list.append(
                    dict(
                        img_path=osp.join(img_root, image['file_name']),
                        text=text,
                        category=category,
                        sample_id=sample_id,
                        ref_id=ref.get('ref_id'),
                        mask_rle=rle,
                        seg_fields=[],
                        reduce_zero_label=False,
                    )
                )
        self._report_empty_sentences(data_list)
        self._report_masks(data_list)
        return data_list
