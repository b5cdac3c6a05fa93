"""RefSegRSDataset reads `output_phrase_<split>.txt` + TIFs as RefSegRS ships them."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from btdnet.datasets import RefSegRSDataset
from btdnet.datasets.base import find_category
from btdnet.datasets.transforms import LoadReferringMask, LoadRSImageFromFile


@pytest.fixture
def refsegrs_copy(synthetic_rrsis_root, tmp_path):
    root = tmp_path / 'refsegrs'
    shutil.copytree(synthetic_rrsis_root / 'refsegrs', root)
    return root


@pytest.mark.parametrize('split', ['train', 'val', 'test'])
def test_loads_generator_sentences_and_masks(synthetic_rrsis_root, synthetic, split):
    meta = json.loads((synthetic_rrsis_root / 'synthetic_meta.json').read_text())
    ds = RefSegRSDataset(data_root=str(synthetic_rrsis_root / 'refsegrs'), split=split)
    assert len(ds) == meta['samples'][split] > 0
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        assert info['sample_id'] == f'{split}_{i + 1}'
        index, k = (int(v) for v in info['image_key'].split('_'))
        img, objects = synthetic.make_scene(meta['seed'], index, meta['size'])
        assert info['text'] == objects[k]['text']
        assert info['category'] == objects[k]['category']
        results = LoadReferringMask()(LoadRSImageFromFile()(info))
        np.testing.assert_array_equal(results['gt_seg_map'], objects[k]['mask'])
        np.testing.assert_array_equal(results['img'], img)  # TIF: lossless


def test_phrase_file_parsing(refsegrs_copy):
    lines = (refsegrs_copy / 'output_phrase_val.txt').read_text().splitlines()
    key = lines[0].split(' ', 1)[0]
    content = f'{key}   the  road  on the left  \r\n\r\n{key} 道路 à gauche\r\n'
    (refsegrs_copy / 'output_phrase_val.txt').write_bytes(content.encode('utf-8'))
    ds = RefSegRSDataset(data_root=str(refsegrs_copy), split='val')
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert [d['text'] for d in infos] == ['the  road  on the left', '道路 à gauche']
    assert [d['sample_id'] for d in infos] == ['val_1', 'val_3']
    assert [d['category'] for d in infos] == ['road', 'unknown']


def test_mask_threshold_is_50(refsegrs_copy):
    ds = RefSegRSDataset(data_root=str(refsegrs_copy), split='test')
    info = ds.get_data_info(0)
    mask = np.zeros(cv2.imread(info['seg_map_path'], cv2.IMREAD_UNCHANGED).shape, np.uint8)
    mask[:4], mask[4:8], mask[8:12] = 50, 51, 255
    cv2.imwrite(info['seg_map_path'], mask)
    gt = LoadReferringMask()(LoadRSImageFromFile()(info))['gt_seg_map']
    assert not gt[:4].any() and gt[4:12].all() and not gt[12:].any()


def test_missing_mask(refsegrs_copy):
    ds = RefSegRSDataset(data_root=str(refsegrs_copy), split='train')
    info = ds.get_data_info(1)
    os.remove(info['seg_map_path'])
    with pytest.raises(FileNotFoundError, match=r'masks/.*\.tif of sample_id train_2'):
        RefSegRSDataset(data_root=str(refsegrs_copy), split='train')
    lazy = RefSegRSDataset(data_root=str(refsegrs_copy), split='train', check_files=False)
    results = LoadRSImageFromFile()(lazy.get_data_info(1))
    with pytest.raises(FileNotFoundError, match='mask of sample_id train_2'):
        LoadReferringMask()(results)


def test_unknown_split(refsegrs_copy):
    with pytest.raises(FileNotFoundError, match=r"split 'testB'.*\['test', 'train', 'val'\]"):
        RefSegRSDataset(data_root=str(refsegrs_copy), split='testB')


@pytest.mark.parametrize(
    'text, category',
    [
        ('the white car parked beside the building', 'car'),
        ('buildings near the road', 'building'),
        ('the low vegetation left of the road marking', 'low vegetation'),
        ('two storage tanks at the top', 'storage tank'),
        ('something', 'unknown'),
    ],
)
def test_find_category(text, category):
    from btdnet.datasets import REFSEGRS_CATEGORIES, RRSISD_CATEGORIES

    assert find_category(text, REFSEGRS_CATEGORIES + RRSISD_CATEGORIES) == category
