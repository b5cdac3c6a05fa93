"""GRefCOCODataset reads the gRefCOCO layout (no, one or several targets per sentence)."""

import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from pycocotools import mask as mask_utils

from btdnet.datasets import GRefCOCODataset, UnsafePickleError
from btdnet.datasets.transforms import (
    LoadReferringMask,
    LoadRSImageFromFile,
    PackReferringInputs,
)

CONFIG = Path(__file__).resolve().parents[2] / 'configs' / '_base_' / 'datasets' / 'grefs.py'

# Image 1 is 8 x 10 (PNG), image 2 is 6 x 6 (JPEG).
SQUARE = [1, 1, 4, 1, 4, 4, 1, 4]  # polygon of annotation 10 (car) on image 1


def tree_mask():
    """Annotation 11 (tree, image 1), stored as a compressed RLE with string counts."""
    mask = np.zeros((8, 10), np.uint8)
    mask[5:8, 6:10] = 1  # 12 pixels
    mask[0, 9] = 1  # and one more, away from the car
    return mask


def polygon_mask(poly, height, width):
    """The pycocotools rasterisation of one polygon (the reference of a polygon annotation)."""
    return mask_utils.decode(mask_utils.frPyObjects([poly], height, width)[0])


def make_instances():
    rle = mask_utils.encode(np.asfortranarray(tree_mask()))
    return dict(
        images=[
            dict(id=1, file_name='a.png', height=8, width=10),
            dict(id=2, file_name='b.jpg', height=6, width=6),
        ],
        annotations=[
            dict(id=10, image_id=1, category_id=1, segmentation=[SQUARE]),
            dict(
                id=11,
                image_id=1,
                category_id=2,
                segmentation=dict(size=rle['size'], counts=rle['counts'].decode()),
            ),
            dict(id=12, image_id=2, category_id=1, segmentation=[[0, 0, 5, 0, 5, 5, 0, 5]]),
        ],
        categories=[dict(id=1, name='car'), dict(id=2, name='tree')],
    )


def sentence(sent_id, raw):
    return dict(raw=raw, sent=raw.lower(), sent_id=sent_id, tokens=raw.split())


def make_refs():
    return [
        # one target, scalar ann_id
        dict(
            ref_id=1,
            image_id=1,
            split='train',
            ann_id=11,
            category_id=2,
            sentences=[sentence(100, 'the tree')],
        ),
        # two targets, list ann_id, two sentences -> two samples
        dict(
            ref_id=2,
            image_id=1,
            split='train',
            ann_id=[10, 11],
            category_id=[1, 2],
            sentences=[sentence(200, 'the car and the tree'), sentence(201, 'both objects')],
        ),
        # no target: ann_id [-1]
        dict(
            ref_id=3,
            image_id=2,
            split='train',
            ann_id=[-1],
            category_id=[-1],
            sentences=[sentence(300, 'the red boat')],
        ),
        # no target: no_target true (scalar -1 as ann_id)
        dict(
            ref_id=4,
            image_id=1,
            split='train',
            ann_id=-1,
            no_target=True,
            sentences=[sentence(400, 'the airplane')],
        ),
        dict(ref_id=5, image_id=2, split='val', ann_id=12, sentences=[sentence(500, 'a car')]),
    ]


def write_set(root: Path, refs=None, instances=None, pickled=False) -> Path:
    """Write the tiny gRefCOCO-layout set under ``root``; returns ``root``."""
    (root / 'grefcoco').mkdir(parents=True, exist_ok=True)
    (root / 'images' / 'train2014').mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(root / 'images/train2014/a.png'), rng.integers(0, 255, (8, 10, 3), np.uint8))
    cv2.imwrite(str(root / 'images/train2014/b.jpg'), rng.integers(0, 255, (6, 6, 3), np.uint8))
    instances = make_instances() if instances is None else instances
    (root / 'grefcoco' / 'instances.json').write_text(json.dumps(instances))
    refs = make_refs() if refs is None else refs
    if pickled:
        with open(root / 'grefcoco' / 'grefs(unc).p', 'wb') as f:
            pickle.dump(refs, f, protocol=2)
    else:
        (root / 'grefcoco' / 'grefs(unc).json').write_text(json.dumps(refs))
    return root


@pytest.fixture
def grefs_root(tmp_path):
    return write_set(tmp_path / 'grefs')


def build(root, split='train', pickled=False, **kwargs):
    ann_file = 'grefcoco/grefs(unc).p' if pickled else 'grefcoco/grefs(unc).json'
    return GRefCOCODataset(data_root=str(root), split=split, ann_file=ann_file, **kwargs)


@pytest.mark.parametrize('pickled', [False, True], ids=['json', 'pickle'])
def test_every_kind_of_ref(tmp_path, log_messages, pickled):
    root = write_set(tmp_path / 'g', pickled=pickled)
    log_messages.clear()
    ds = build(root, pickled=pickled)
    infos = {ds.get_data_info(i)['sample_id']: ds.get_data_info(i) for i in range(len(ds))}
    assert list(infos) == ['100', '200', '201', '300', '400']
    car = polygon_mask(SQUARE, 8, 10)
    assert car[2, 2] == 1 and car[:, 5:].sum() == 0 and car.sum() >= 9  # inside the square
    tree = tree_mask()
    assert not (car & tree).any()

    def mask_of(info):
        return mask_utils.decode(info['mask_rle'])

    single = infos['100']
    assert (single['category'], single['no_target'], single['num_targets']) == ('tree', False, 1)
    np.testing.assert_array_equal(mask_of(single), tree)
    assert single['img_path'] == os.path.join(str(root), 'images/train2014', 'a.png')

    for sid, text in (('200', 'the car and the tree'), ('201', 'both objects')):
        multi = infos[sid]
        assert multi['text'] == text and multi['ref_id'] == 2
        assert (multi['category'], multi['no_target'], multi['num_targets']) == (
            'car + tree',
            False,
            2,
        )
        union = mask_of(multi)
        assert union.sum() == car.sum() + tree.sum()  # disjoint: the sizes add up
        np.testing.assert_array_equal(union, car | tree)  # pixel by pixel

    for sid, shape in (('300', (6, 6)), ('400', (8, 10))):
        none = infos[sid]
        assert (none['category'], none['no_target'], none['num_targets']) == ('no target', True, 0)
        assert mask_of(none).shape == shape and not mask_of(none).any()
    assert infos['300']['img_path'].endswith('b.jpg')
    assert all(
        type(i) is dict and i['seg_fields'] == [] and not i['reduce_zero_label']
        for i in infos.values()
    )

    counts = [m for m in log_messages if 'samples have no target' in m]
    assert counts == ['GRefCOCODataset (train): 2 of 5 samples have no target, 2 several']
    assert not [m for m in log_messages if 'empty' in m]  # no-target masks are not defects


def test_val_split_and_defaults(grefs_root):
    ds = GRefCOCODataset(data_root=str(grefs_root), split='val')  # default file names
    info = ds.get_data_info(0)
    assert len(ds) == 1 and info['sample_id'] == '500' and info['category'] == 'car'
    assert mask_utils.decode(info['mask_rle'])[:5, :5].all()


def test_pipeline_packs_no_target_and_num_targets(grefs_root, log_messages):
    pipeline = [LoadRSImageFromFile(), LoadReferringMask(), PackReferringInputs()]
    log_messages.clear()
    ds = build(grefs_root, pipeline=pipeline)
    seen = {}
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        seen[sample.sample_id] = (sample.no_target, sample.num_targets)
        if sample.no_target:
            assert not sample.gt_sem_seg.data.any()
    assert seen == {
        '100': (False, 1),
        '200': (False, 2),
        '201': (False, 2),
        '300': (True, 0),
        '400': (True, 0),
    }
    assert len(log_messages) == 1 and '2 of 5 samples have no target' in log_messages[0]


def test_config_builds_the_dataset(grefs_root):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    init_default_scope('mmseg')
    cfg = Config.fromfile(str(CONFIG))
    assert cfg.test_dataloader.dataset.split == 'testA'
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.data_root = str(grefs_root)
    ds = DATASETS.build(ds_cfg)
    out = ds[3]  # sample 300: no target
    assert out['inputs'].shape == (3, 512, 512)
    assert out['data_samples'].no_target is True and out['data_samples'].num_targets == 0


def test_check_dataset_counts_no_target_apart(grefs_root, capsys):
    from conftest import load_tool

    check = load_tool('analysis_tools/check_dataset.py')
    assert check.main([str(CONFIG), '--data-root', str(grefs_root), '--split', 'train']) == 0
    out = capsys.readouterr().out
    assert 'GRefCOCODataset train: 5 samples' in out
    assert 'targets per sample: 2 with none, 1 with one, 2 with several' in out
    assert 'empty masks' not in out and 'OK: 0 error(s), 0 warning(s)' in out


# ---------------------------------------------------------------- bad inputs
def test_missing_instances_json(grefs_root):
    os.remove(grefs_root / 'grefcoco' / 'instances.json')
    with pytest.raises(FileNotFoundError, match=r'COCO annotations at .*grefcoco/instances\.json'):
        build(grefs_root)


@pytest.mark.parametrize(
    'ref_id, key, value, match',
    [
        (1, 'ann_id', 99, r'ref_id 1 points at annotation 99, which .*instances\.json'),
        (2, 'ann_id', [10, 98], r'ref_id 2 points at annotation 98, which .*instances\.json'),
        (3, 'image_id', 7, r'ref_id 3 points at image 7, which .*instances\.json'),
    ],
)
def test_ref_to_unknown_annotation_or_image(tmp_path, ref_id, key, value, match):
    refs = make_refs()
    refs[ref_id - 1][key] = value
    root = write_set(tmp_path / 'g', refs=refs)
    with pytest.raises(KeyError, match=r'grefs\(unc\)\.json: ' + match):
        build(root)


def test_hostile_pickle_is_refused(tmp_path):
    marker = tmp_path / 'pwned'

    class Exploit:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)

    refs = make_refs()
    refs[0]['payload'] = Exploit()
    root = write_set(tmp_path / 'g', refs=refs, pickled=True)
    with pytest.raises(UnsafePickleError, match=r'grefs\(unc\)\.p: refused .*system'):
        build(root, pickled=True)
    assert not marker.exists()


def test_empty_sentence_list(tmp_path):
    refs = make_refs()
    refs[1]['sentences'] = []
    root = write_set(tmp_path / 'g', refs=refs)
    with pytest.raises(
        ValueError, match=r'grefs\(unc\)\.json: ref_id 2: expected a non-empty list of sentences'
    ):
        build(root)


@pytest.mark.parametrize(
    'changes, match',
    [
        (dict(ann_id='11'), r"ann_id` as an int or a non-empty list of ints.*found '11'"),
        (dict(ann_id=[]), r'ann_id` as an int or a non-empty list of ints.*found \[\]'),
        (dict(ann_id=True), r'ann_id` as an int or a non-empty list of ints.*found True'),
        (dict(ann_id=[-1, 11]), r'found -1 among \[-1, 11\]'),
        (dict(no_target=True), r'`no_target` is true but `ann_id` names annotations 11'),
        (dict(no_target='yes'), r"`no_target` true or false, found 'yes'"),
    ],
)
def test_malformed_ann_id(tmp_path, changes, match):
    refs = make_refs()
    refs[0].update(changes)
    root = write_set(tmp_path / 'g', refs=refs)
    with pytest.raises(ValueError, match=r'grefs\(unc\)\.json: ref_id 1: .*' + match):
        build(root)


def test_missing_ann_id_is_fine_only_with_no_target(tmp_path):
    refs = make_refs()
    del refs[3]['ann_id']  # ref 4 has no_target: true
    assert len(build(write_set(tmp_path / 'a', refs=refs))) == 5
    del refs[0]['ann_id']
    with pytest.raises(ValueError, match=r'ref_id 1: expected the key `ann_id`'):
        build(write_set(tmp_path / 'b', refs=refs))


def test_unknown_split(grefs_root):
    with pytest.raises(
        ValueError, match=r"grefs\(unc\)\.json: unknown split 'testA'.*'train', 'val'"
    ):
        build(grefs_root, split='testA')


def test_rle_of_another_size_than_the_image(tmp_path):
    instances = make_instances()
    narrow = mask_utils.encode(np.ones((8, 9), np.uint8, order='F'))  # the image is 8 x 10
    instances['annotations'][1]['segmentation'] = dict(
        size=[8, 9], counts=narrow['counts'].decode()
    )
    root = write_set(tmp_path / 'g', instances=instances)
    with pytest.raises(
        ValueError, match=r'instances\.json: the annotations \[10, 11\] of ref_id 2'
    ):
        build(root)


def test_missing_image(grefs_root):
    os.remove(grefs_root / 'images' / 'train2014' / 'b.jpg')
    with pytest.raises(FileNotFoundError, match=r'image of sample_id 300 at .*b\.jpg'):
        build(grefs_root)
    assert len(build(grefs_root, check_files=False)) == 5
