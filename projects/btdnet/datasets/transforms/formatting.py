"""Packing a referring sample into mmseg's ``inputs`` / ``SegDataSample`` pair."""

from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import TRANSFORMS

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

    Added Keys:

    - inputs (torch.uint8, (3, H, W))
    - data_samples (SegDataSample): ``gt_sem_seg`` = PixelData(data=LongTensor (1, H', W'));
      metainfo: the ``meta_keys`` found in the results

    Args:
        meta_keys (Sequence[str]): Keys copied into the data sample's metainfo.
            Default: :data:`REFERRING_META_KEYS` (mmseg's keys + text, key_spans, category,
            sample_id).
    """

    def __init__(self, meta_keys=REFERRING_META_KEYS):
        super().__init__(meta_keys=meta_keys)
