"""tools/dataset_converters/make_synthetic_rrsis.py: seeded, fast, text-only disambiguation."""

import filecmp
import json

import numpy as np
import pytest


def test_scenes_are_seeded(make_synthetic_rrsis):
    img_a, objs_a = make_synthetic_rrsis.make_scene(3, 7, 64)
    img_b, objs_b = make_synthetic_rrsis.make_scene(3, 7, 64)
    np.testing.assert_array_equal(img_a, img_b)
    assert [o['text'] for o in objs_a] == [o['text'] for o in objs_b]
    img_c, _ = make_synthetic_rrsis.make_scene(4, 7, 64)
    assert not np.array_equal(img_a, img_c)


def test_targets_told_apart_only_by_text(make_synthetic_rrsis):
    for index in range(20):
        img, objects = make_synthetic_rrsis.make_scene(0, index, 128)
        assert len(objects) >= 2
        texts = [o['text'] for o in objects]
        assert len(set(texts)) == len(texts)
        assert len({o['colour'] for o in objects}) == len(objects)  # the colour word decides
        masks = np.stack([o['mask'] for o in objects])
        assert masks.sum(0).max() == 1  # disjoint
        for obj in objects:
            assert obj['mask'].any()
            assert obj['colour'] in obj['text'] and obj['category'] in obj['text']
            colour = make_synthetic_rrsis.COLOURS[obj['colour']]
            inside = img[obj['mask'].astype(bool)]
            share = (np.abs(inside.astype(int) - colour).max(-1) <= 2).mean()
            assert share > 0.5  # the object is painted in the colour its sentence names


def test_positions_in_text_match_masks(make_synthetic_rrsis):
    for index in range(20):
        _, objects = make_synthetic_rrsis.make_scene(1, index, 120)
        for obj in objects:
            ys, xs = np.nonzero(obj['mask'])
            if 'left' in obj['text']:
                assert xs.mean() < 60
            if 'right' in obj['text']:
                assert xs.mean() > 60
            if 'top' in obj['text']:
                assert ys.mean() < 60
            if 'bottom' in obj['text']:
                assert ys.mean() > 60


def test_same_seed_same_files(make_synthetic_rrsis, tmp_path):
    for name in ('a', 'b'):
        make_synthetic_rrsis.generate(str(tmp_path / name), num_images=4, seed=9, size=48)
    for rel in (
        'rrsisd/refs(unc).p',
        'rrsisd/instances.json',
        'refsegrs/masks/00001_0.tif',
        'refsegrs/output_phrase_train.txt',
        'images/rrsisd/JPEGImages/00002.jpg',
    ):
        assert filecmp.cmp(tmp_path / 'a' / rel, tmp_path / 'b' / rel, shallow=False), rel


def test_formats_and_splits(make_synthetic_rrsis, tmp_path):
    make_synthetic_rrsis.main(
        [str(tmp_path / 'r'), '--format', 'rrsisd', '--num-images', '3', '--size', '48']
    )
    assert (tmp_path / 'r' / 'rrsisd' / 'instances.json').exists()
    assert not (tmp_path / 'r' / 'refsegrs').exists()
    meta = json.loads((tmp_path / 'r' / 'synthetic_meta.json').read_text())
    assert all(meta['samples'][s] > 0 for s in ('train', 'val', 'test'))
    with pytest.raises(ValueError, match='formats'):
        make_synthetic_rrsis.generate(str(tmp_path / 'x'), num_images=1, formats=('coco',))
