"""PackReferringInputs: uint8 (3, H, W) inputs, LongTensor 0/1 gt, referring metainfo."""

import numpy as np
import pytest
import torch

from btdnet.datasets.transforms import PackReferringInputs


def test_pack():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (8, 6, 3), dtype=np.uint8)
    gt = (rng.random((5, 4)) > 0.5).astype(np.uint8)
    results = dict(
        img=img,
        gt_seg_map=gt,
        img_path='a.jpg',
        ori_shape=(5, 4),
        img_shape=(8, 6),
        scale_factor=(1.5, 1.6),
        text='the red ship',
        key_spans=[[8, 12]],
        category='ship',
        sample_id='7',
        unrelated=1,
    )
    out = PackReferringInputs()(results)
    assert out['inputs'].dtype == torch.uint8 and out['inputs'].shape == (3, 8, 6)
    np.testing.assert_array_equal(out['inputs'].permute(1, 2, 0).numpy(), img)
    assert np.shares_memory(out['inputs'].numpy(), img)  # a view: no copy in the workers
    seg = out['data_samples'].gt_sem_seg.data
    assert seg.dtype == torch.uint8 and seg.shape == (1, 5, 4)
    np.testing.assert_array_equal(seg[0].numpy(), gt)
    meta = out['data_samples'].metainfo
    assert meta['text'] == 'the red ship' and meta['key_spans'] == [[8, 12]]
    assert meta['category'] == 'ship' and meta['sample_id'] == '7'
    assert meta['ori_shape'] == (5, 4) and 'unrelated' not in meta


def test_pack_without_gt():
    out = PackReferringInputs()(dict(img=np.zeros((4, 4, 3), np.uint8), text='x'))
    assert 'gt_sem_seg' not in out['data_samples'] and out['data_samples'].metainfo['text'] == 'x'
    assert 'sample_id' in repr(PackReferringInputs())


def test_same_as_mmseg_pack():
    from mmseg.datasets.transforms import PackSegInputs

    rng = np.random.default_rng(2)
    results = dict(
        img=rng.integers(0, 256, (6, 5, 3), dtype=np.uint8),
        gt_seg_map=rng.integers(0, 2, (6, 5), dtype=np.uint8),
        img_path='p',
    )
    ours = PackReferringInputs()(dict(results))
    theirs = PackSegInputs()(dict(results))
    assert torch.equal(ours['inputs'], theirs['inputs'])
    assert torch.equal(
        ours['data_samples'].gt_sem_seg.data.long(), theirs['data_samples'].gt_sem_seg.data
    )
    with pytest.raises(ValueError, match='sample_id 3: expected a 2-D gt_seg_map'):
        PackReferringInputs()(dict(results, gt_seg_map=np.zeros((2, 2, 2)), sample_id='3'))
