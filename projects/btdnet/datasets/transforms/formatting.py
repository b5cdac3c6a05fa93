"""Packing a referring sample into mmseg's ``inputs`` / ``SegDataSample`` pair."""

import torch
from mmengine.structures import PixelData
from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import TRANSFORMS
from mmseg.structures import SegDataSample

REFERRING_META_KEYS = (
    'img_path',
    'seg_map_path',
    'ori_shape',
    'img_shape',
    'pad_shape',
    'scale_factor',
    'flip',
    'flip_direction',
    'reduce_zero_label',
    'text',
    'key_spans',
    'category',
    'sample_id',
    'no_target',
    'num_targets',
)


@TRANSFORMS.register_module()
class PackReferringInputs(PackSegInputs):
    """Pack an image, its 0/1 mask and its sentence as mmseg's ``PackSegInputs`` does.

    The sentence travels as a raw string in the metainfo and is tokenised inside the model, on the
    model's device (as mmdet's Grounding DINO does), together with the key-phrase spans that
    :class:`~btdnet.datasets.transforms.ExtractKeyPhraseSpans` found.

    Required Keys:

    - img (np.uint8, (H, W, 3))
    - gt_seg_map (np.uint8, (H', W'), 0/1; optional, absent at inference)
    - text, key_spans, category, sample_id, and the shape keys of ``meta_keys`` where present
    - no_target, num_targets (generalized datasets such as gRefCOCO; copied only where present,
      so RRSIS-D / RefSegRS samples carry neither)

    Added Keys:

    - inputs (torch.uint8, (3, H, W)): a channels-first view of ``img`` (no copy)
    - data_samples (SegDataSample): ``gt_sem_seg`` = PixelData(data=torch.uint8 (1, H', W'), 0/1);
      metainfo: the ``meta_keys`` found in the results

    Both stay uint8 on their way from the dataloader workers (8x less than an int64 mask to
    pass between processes); the data preprocessor and the loss take them as they are.

    Args:
        meta_keys (Sequence[str]): Keys copied into the data sample's metainfo.
            Default: :data:`REFERRING_META_KEYS` (mmseg's keys + text, key_spans, category,
            sample_id, no_target, num_targets).
    """

    def __init__(self, meta_keys=REFERRING_META_KEYS):
        super().__init__(meta_keys=meta_keys)

    def transform(self, results: dict) -> dict:
        packed = {}
        img = results.get('img')
        if img is not None:
            if img.ndim == 2:
                img = img[..., None]
            # A channels-first view, not a copy: the data preprocessor's stack (and its BGR->RGB
            # indexing) copies every image anyway, so a copy here would be a second one.
            packed['inputs'] = torch.from_numpy(img).permute(2, 0, 1)
        data_sample = SegDataSample()
        gt = results.get('gt_seg_map')
        if gt is not None:
            if gt.ndim != 2:
                raise ValueError(
                    f'sample_id {results.get("sample_id")}: expected a 2-D '
                    f'gt_seg_map, found shape {gt.shape}'
                )
            data_sample.gt_sem_seg = PixelData(data=torch.from_numpy(gt[None]))
        # set_field, not set_metainfo: set_metainfo deep-copies every value, and these are this
        # sample's own (mmengine's get_data_info hands each sample a fresh copy of its info, and
        # ExtractKeyPhraseSpans builds new span lists per sample).
        for key in self.meta_keys:
            if key in results:
                data_sample.set_field(results[key], key, field_type='metainfo')
        packed['data_samples'] = data_sample
        return packed
