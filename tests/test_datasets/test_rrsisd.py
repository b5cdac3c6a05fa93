"""RRSISDDataset reads the REFER layout as RRSIS-D ships it, and fails loudly on bad files."""

import json
import os
import pickle
import shutil

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from pycocotools import mask as mask_utils

from btdnet.datasets import RRSISDDataset, UnsafePickleError, segmentation_to_rle
from btdnet.datasets.transforms import LoadReferringMask, LoadRSImageFromFile

CONFIG = os.path.join(os.path.dirname(__file__), '../../configs/_base_/datasets/synthetic_rrsis.py')


@pytest.fixture
def rrsisd_copy(synthetic_rrsis_root, tmp_path):
    """A writable copy of the synthetic dataset's RRSIS-D layout."""
    root = tmp_path / 'rrsisd_copy'
    shutil.copytree(synthetic_rrsis_root / 'rrsisd', root / 'rrsisd')
    shutil.copytree(synthetic_rrsis_root / 'images', root / 'images')
    return root


def _refs(root):
    with open(root / 'rrsisd' / 'refs(unc).p', 'rb') as f:
        return pickle.load(f)  # our own test file


def _write_refs(root, refs):
    with open(root / 'rrsisd' / 'refs(unc).p', 'wb') as f:
        pickle.dump(refs, f)


def _coco(root):
    return json.loads((root / 'rrsisd' / 'instances.json').read_text())


def _write_coco(root, coco):
    (root / 'rrsisd' / 'instances.json').write_text(json.dumps(coco))


@pytest.mark.parametrize('split', ['train', 'val', 'test'])
def test_loads_generator_sentences_and_masks(synthetic_rrsis_root, synthetic, split):
    meta = json.loads((synthetic_rrsis_root / 'synthetic_meta.json').read_text())
    ds = RRSISDDataset(data_root=str(synthetic_rrsis_root), split=split)
    assert len(ds) == meta['samples'][split] > 0
    decode = LoadReferringMask()
    scenes = {}
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        assert set(info) >= {
            'img_path',
            'text',
            'category',
            'sample_id',
            'mask_rle',
            'seg_fields',
            'reduce_zero_label',
        }
        index, k = divmod(int(info['sample_id']), 10)
        if index not in scenes:
            scenes[index] = synthetic.make_scene(meta['seed'], index, meta['size'])
        obj = scenes[index][1][k]
        assert info['text'] == obj['text']
        assert info['category'] == obj['category']
        assert info['img_path'].endswith(f'{index:05d}.jpg')
        out = decode(dict(info, ori_shape=(meta['size'], meta['size'])))
        assert out['gt_seg_map'].dtype == np.uint8
        np.testing.assert_array_equal(out['gt_seg_map'], obj['mask'])
    ids = [ds.get_data_info(i)['sample_id'] for i in range(len(ds))]
    assert len(set(ids)) == len(ids)


def test_config_pipelines(synthetic_rrsis_root):
    init_default_scope('mmseg')
    from mmseg.registry import DATASETS

    cfg = Config.fromfile(CONFIG)
    assert cfg.train_dataloader.batch_size == 2 and cfg.test_dataloader.batch_size == 1
    sizes = {}
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds_cfg = cfg[name].dataset
        ds_cfg.data_root = str(synthetic_rrsis_root)
        out = DATASETS.build(ds_cfg)[0]
        sample = out['data_samples']
        assert out['inputs'].shape == (3, 512, 512)
        sizes[name] = tuple(sample.gt_sem_seg.data.shape)
        assert set(sample.metainfo) >= {
            'img_path',
            'ori_shape',
            'img_shape',
            'scale_factor',
            'text',
            'key_spans',
            'category',
            'sample_id',
        }
    size = json.loads((synthetic_rrsis_root / 'synthetic_meta.json').read_text())['size']
    assert sizes['train_dataloader'] == (1, 512, 512)  # resized with the image
    assert sizes['val_dataloader'] == sizes['test_dataloader'] == (1, size, size)  # original


def test_image_taller_than_mask(rrsisd_copy, log_messages):
    """RRSIS-D's 800x801 JPEGs with 800x800 masks: mask resized to the image, one warning."""
    ds0 = RRSISDDataset(data_root=str(rrsisd_copy), split='train')
    info = ds0.get_data_info(0)
    img = cv2.imread(info['img_path'])
    cv2.imwrite(info['img_path'], np.concatenate([img, img[-1:]], axis=0))  # one row more
    affected = sum(ds0.get_data_info(i)['img_path'] == info['img_path'] for i in range(len(ds0)))
    log_messages.clear()
    ds = RRSISDDataset(data_root=str(rrsisd_copy), split='train')
    warnings = [m for m in log_messages if 'another size' in m]
    assert len(warnings) == 1 and f'{affected} sample(s) (1 image(s))' in warnings[0]
    results = LoadRSImageFromFile()(ds.get_data_info(0))
    mask = LoadReferringMask()(results)['gt_seg_map']
    assert mask.shape == results['img'].shape[:2] == (img.shape[0] + 1, img.shape[1])
    original = mask_utils.decode(info['mask_rle'])
    rows = np.arange(mask.shape[0]) * original.shape[0] // mask.shape[0]  # nearest neighbour
    np.testing.assert_array_equal(mask, original[rows])


def test_hostile_pickle_is_refused(rrsisd_copy, tmp_path):
    marker = tmp_path / 'pwned'

    class Exploit:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)

    _write_refs(rrsisd_copy, [dict(ref_id=0, split='train', payload=Exploit())])
    with pytest.raises(UnsafePickleError, match=r'refs\(unc\)\.p.*system'):
        RRSISDDataset(data_root=str(rrsisd_copy), split='train')
    assert not marker.exists()


def test_python2_style_pickle_with_sets_loads(rrsisd_copy):
    refs = _refs(rrsisd_copy)
    refs[0]['extra'] = {1, 2}
    with open(rrsisd_copy / 'rrsisd' / 'refs(unc).p', 'wb') as f:
        pickle.dump(refs, f, protocol=2)
    ds = RRSISDDataset(data_root=str(rrsisd_copy), split='train')
    assert len(ds) > 0


def test_malformed_instances_json(rrsisd_copy):
    path = rrsisd_copy / 'rrsisd' / 'instances.json'
    path.write_text(path.read_text()[:100])
    with pytest.raises(ValueError, match='instances.json: expected COCO JSON'):
        RRSISDDataset(data_root=str(rrsisd_copy), split='train')
    path.write_text(json.dumps(dict(images=[], categories=[])))
    with pytest.raises(ValueError, match=r"instances.json.*missing \['annotations'\]"):
        RRSISDDataset(data_root=str(rrsisd_copy), split='train')


def test_ref_pointing_at_missing_annotation(rrsisd_copy):
    refs = _refs(rrsisd_copy)
    refs[0]['ann_id'] = 999999
    _write_refs(rrsisd_copy, refs)
    with pytest.raises(KeyError, match=f'ref_id {refs[0]["ref_id"]} points at annotation 999999'):
        RRSISDDataset(data_root=str(rrsisd_copy), split=refs[0]['split'])


def test_unknown_split(synthetic_rrsis_root):
    with pytest.raises(ValueError, match=r"unknown split 'testA'.*\['test', 'train', 'val'\]"):
        RRSISDDataset(data_root=str(synthetic_rrsis_root), split='testA')


def test_missing_image(rrsisd_copy):
    ds = RRSISDDataset(data_root=str(rrsisd_copy), split='val')
    info = ds.get_data_info(0)
    os.remove(info['img_path'])
    with pytest.raises(FileNotFoundError, match=f'sample_id {info["sample_id"]}'):
        RRSISDDataset(data_root=str(rrsisd_copy), split='val')
    lazy = RRSISDDataset(data_root=str(rrsisd_copy), split='val', check_files=False)
    with pytest.raises(FileNotFoundError, match=f'image of sample_id {info["sample_id"]}'):
        LoadRSImageFromFile()(lazy.get_data_info(0))


def test_sentences_kept_as_written(rrsisd_copy, log_messages):
    """Empty, 200-word and non-ASCII sentences are kept; empty ones are reported once."""
    refs = _refs(rrsisd_copy)
    train = [r for r in refs if r['split'] == 'train']
    long_text = ' '.join(['the red vehicle next to the road'] * 29)[:2000]
    texts = ['', long_text, 'le véhicule rouge à gauche 左边的红色车辆']
    for ref, text in zip(train, texts):
        ref['sentences'][0]['raw'] = text
    _write_refs(rrsisd_copy, refs)
    log_messages.clear()
    ds = RRSISDDataset(data_root=str(rrsisd_copy), split='train')
    loaded = {ds.get_data_info(i)['sample_id']: ds.get_data_info(i)['text'] for i in range(len(ds))}
    for ref, text in zip(train, texts):
        assert loaded[str(ref['sentences'][0]['sent_id'])] == text
    assert len(long_text.split()) >= 200
    empty = [m for m in log_messages if 'empty sentence' in m]
    assert len(empty) == 1 and f"'{train[0]['sentences'][0]['sent_id']}'" in empty[0]


def test_empty_mask_kept_and_warned(rrsisd_copy, log_messages):
    coco = _coco(rrsisd_copy)
    refs = [r for r in _refs(rrsisd_copy) if r['split'] == 'test']
    ann = next(a for a in coco['annotations'] if a['id'] == refs[0]['ann_id'])
    ann['segmentation'] = []
    _write_coco(rrsisd_copy, coco)
    log_messages.clear()
    ds = RRSISDDataset(data_root=str(rrsisd_copy), split='test')
    assert len(ds) == len(refs)
    assert sum('empty mask' in m for m in log_messages) == 1
    info = next(
        ds.get_data_info(i)
        for i in range(len(ds))
        if ds.get_data_info(i)['ref_id'] == refs[0]['ref_id']
    )
    mask = LoadReferringMask()(LoadRSImageFromFile()(info))['gt_seg_map']
    assert mask.shape == tuple(info['mask_rle']['size']) and not mask.any()


def test_category_key_spellings(rrsisd_copy):
    coco = _coco(rrsisd_copy)
    names = {c['id']: c['name'] for c in coco['categories']}
    for ann in coco['annotations']:
        ann['category_id'] = ann.pop('categories_id')
    _write_coco(rrsisd_copy, coco)
    ds = RRSISDDataset(data_root=str(rrsisd_copy), split='val')
    by_ann = {a['id']: names[a['category_id']] for a in coco['annotations']}
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        assert info['category'] == by_ann[info['ref_id']]


class TestSegmentationForms:
    mask = np.zeros((20, 30), np.uint8)
    mask[5:12, 8:20] = 1

    def _decoded(self, seg, h=20, w=30):
        return mask_utils.decode(segmentation_to_rle(seg, h, w))

    def test_rle_str_bytes_bare_and_uncompressed(self):
        rle = mask_utils.encode(np.asfortranarray(self.mask))
        as_str = dict(size=rle['size'], counts=rle['counts'].decode())
        for seg in ([as_str], [rle], as_str, rle):
            np.testing.assert_array_equal(self._decoded(seg), self.mask)
        flat = self.mask.flatten(order='F')
        change = np.flatnonzero(np.diff(flat)) + 1
        runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
        np.testing.assert_array_equal(self._decoded(dict(size=[20, 30], counts=runs)), self.mask)

    def test_polygons_and_union(self):
        square = [2, 2, 10, 2, 10, 10, 2, 10]
        other = [20, 12, 28, 12, 28, 18, 20, 18]
        both = self._decoded([square, other])
        assert both[5, 5] == 1 and both[15, 24] == 1 and both[15, 5] == 0
        assert both.sum() == self._decoded([square]).sum() + self._decoded([other]).sum()

    def test_empty_list_is_an_empty_mask(self):
        assert self._decoded([]).shape == (20, 30) and not self._decoded([]).any()

    @pytest.mark.parametrize('seg', [None, [[1, 2, 3]], [dict(counts='x')], [[0] * 6, {}]])
    def test_malformed(self, seg):
        with pytest.raises(ValueError, match='expected'):
            segmentation_to_rle(seg, 20, 30)

    def test_malformed_segmentation_names_annotation(self, rrsisd_copy):
        coco = _coco(rrsisd_copy)
        coco['annotations'][0]['segmentation'] = [[1, 2, 3]]
        _write_coco(rrsisd_copy, coco)
        split = next(
            r['split'] for r in _refs(rrsisd_copy) if r['ann_id'] == coco['annotations'][0]['id']
        )
        with pytest.raises(ValueError, match=f'annotation {coco["annotations"][0]["id"]}'):
            RRSISDDataset(data_root=str(rrsisd_copy), split=split)
