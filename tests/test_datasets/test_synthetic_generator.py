"""btdnet.datasets.synthetic and its command line: seeded scenes, colour and distractor tasks."""

import filecmp
import json
import re
from collections import Counter

import cv2
import numpy as np
import pytest
from conftest import load_tool

cli = load_tool('dataset_converters/make_synthetic_rrsis.py')


def test_scenes_are_seeded(synthetic):
    img_a, objs_a = synthetic.make_scene(3, 7, 64)
    img_b, objs_b = synthetic.make_scene(3, 7, 64)
    np.testing.assert_array_equal(img_a, img_b)
    assert [o['text'] for o in objs_a] == [o['text'] for o in objs_b]
    img_c, _ = synthetic.make_scene(4, 7, 64)
    assert not np.array_equal(img_a, img_c)


def test_targets_told_apart_only_by_text(synthetic):
    for index in range(20):
        img, objects = synthetic.make_scene(0, index, 128)
        assert len(objects) >= 2
        texts = [o['text'] for o in objects]
        assert len(set(texts)) == len(texts)
        assert len({o['colour'] for o in objects}) == len(objects)  # the colour word decides
        masks = np.stack([o['mask'] for o in objects])
        assert masks.sum(0).max() == 1  # disjoint
        for obj in objects:
            assert obj['mask'].any()
            assert obj['colour'] in obj['text'] and obj['category'] in obj['text']
            colour = synthetic.COLOURS[obj['colour']]
            inside = img[obj['mask'].astype(bool)]
            share = (np.abs(inside.astype(int) - colour).max(-1) <= 2).mean()
            assert share > 0.5  # the object is painted in the colour its sentence names


def test_positions_in_text_match_masks(synthetic):
    """The generator names thirds of the image (left / middle / right, top / middle / bottom)
    from an object's placed centre; its mask's centroid lies in that third, within a slack of
    4 % of the side (shapes are not symmetric about the placed centre)."""
    size, slack = 120, 0.04 * 120
    thirds = {
        'low': (-slack, size / 3 + slack),
        'mid': (size / 3 - slack, 2 * size / 3 + slack),
        'high': (2 * size / 3 - slack, size + slack),
    }
    checked = set()
    for index in range(20):
        _, objects = synthetic.make_scene(1, index, size)
        for obj in objects:
            ys, xs = np.nonzero(obj['mask'])
            words = obj['text'].split()
            col = 'low' if 'left' in words else 'high' if 'right' in words else 'mid'
            row = 'low' if 'top' in words else 'high' if 'bottom' in words else 'mid'
            for centroid, third in ((xs.mean(), col), (ys.mean(), row)):
                low, high = thirds[third]
                assert low <= centroid <= high, (obj['text'], centroid)
            checked.add((col, row))
    assert len(checked) >= 7  # the scenes cover most of the nine cells


def test_same_seed_same_files(synthetic, tmp_path):
    for name in ('a', 'b'):
        synthetic.generate(str(tmp_path / name), num_images=4, seed=9, size=48)
    for rel in (
        'rrsisd/refs(unc).p',
        'rrsisd/instances.json',
        'refsegrs/masks/00001_0.tif',
        'refsegrs/output_phrase_train.txt',
        'images/rrsisd/JPEGImages/00002.jpg',
    ):
        assert filecmp.cmp(tmp_path / 'a' / rel, tmp_path / 'b' / rel, shallow=False), rel


def test_formats_and_splits(synthetic, tmp_path):
    cli.main([str(tmp_path / 'r'), '--format', 'rrsisd', '--num-images', '3', '--size', '48'])
    assert (tmp_path / 'r' / 'rrsisd' / 'instances.json').exists()
    assert not (tmp_path / 'r' / 'refsegrs').exists()
    meta = json.loads((tmp_path / 'r' / 'synthetic_meta.json').read_text())
    assert all(meta['samples'][s] > 0 for s in ('train', 'val', 'test'))
    with pytest.raises(ValueError, match='formats'):
        synthetic.generate(str(tmp_path / 'x'), num_images=1, formats=('coco',))


def test_eval_images_fix_val_and_test(synthetic, tmp_path, capsys):
    """--eval-images N: the last N scenes are test, the N before them val, the rest train."""
    cli.main(
        [str(tmp_path / 'r'), '--format', 'rrsisd', '--num-images', '9', '--size', '48']
        + ['--eval-images', '2']
    )
    meta = json.loads((tmp_path / 'r' / 'synthetic_meta.json').read_text())
    assert meta['eval_images'] == 2
    records = json.loads((tmp_path / 'r' / 'synthetic_objects.json').read_text())
    scenes = {
        split: sorted({r['image_id'] for r in records if r['split'] == split})
        for split in ('train', 'val', 'test')
    }
    assert scenes == {'train': [0, 1, 2, 3, 4], 'val': [5, 6], 'test': [7, 8]}
    for split, ids in scenes.items():  # every sentence of a scene in that scene's split
        assert meta['samples'][split] == sum(r['image_id'] in ids for r in records)
    with pytest.raises(SystemExit):
        cli.main([str(tmp_path / 'x'), '--num-images', '4', '--eval-images', '2'])
    assert '--eval-images 2: expected >= 0 and less than half of --num-images 4' in (
        capsys.readouterr().err
    )
    assert not (tmp_path / 'x').exists()
    with pytest.raises(ValueError, match='eval_images'):
        synthetic.generate(str(tmp_path / 'y'), num_images=4, eval_images=-1)


# ----------------------------------------------------------------------- the distractor task
# An independent reading of the sentences: the grammar the generator promises, the position
# words as regions of a 3 x 3 grid of thirds (an edge word covers its whole third, corners
# included; "in the middle" is the centre cell), read on each mask's own centroid. ``s`` moves
# every border by s (> 0: each region grows), for readers who place the borders differently.
POSITIONS = {
    'on the left': lambda x, y, s: x < 1 / 3 + s,
    'on the right': lambda x, y, s: x > 2 / 3 - s,
    'at the top': lambda x, y, s: y < 1 / 3 + s,
    'at the bottom': lambda x, y, s: y > 2 / 3 - s,
    'at the top left': lambda x, y, s: x < 1 / 3 + s and y < 1 / 3 + s,
    'at the top right': lambda x, y, s: x > 2 / 3 - s and y < 1 / 3 + s,
    'at the bottom left': lambda x, y, s: x < 1 / 3 + s and y > 2 / 3 - s,
    'at the bottom right': lambda x, y, s: x > 2 / 3 - s and y > 2 / 3 - s,
    'in the middle': lambda x, y, s: 1 / 3 - s < x < 2 / 3 + s and 1 / 3 - s < y < 2 / 3 + s,
}
COLOUR_WORDS = ('red', 'blue', 'yellow', 'white', 'orange', 'purple')
CATEGORY_WORDS = ('vehicle', 'storage tank', 'building', 'ship', 'tennis court', 'airplane')
NOUN = f'(?:(?P<colour>{"|".join(COLOUR_WORDS)}) )?(?P<category>{"|".join(CATEGORY_WORDS)})'
ABSOLUTE = re.compile(f'the {NOUN}(?: (?P<where>{"|".join(POSITIONS)}))?')
RELATIVE = re.compile(f'the (?P<rel>left|right|upper|lower) one of the two {NOUN}s')


def _centroid(mask):
    ys, xs = np.nonzero(mask)
    return xs.mean() / mask.shape[1], ys.mean() / mask.shape[0]


def _referents(sentence, objects, slack=0.0):
    """Indices of the objects ``sentence`` can mean (borders moved by ``slack``), and what it
    names."""
    if match := RELATIVE.fullmatch(sentence):
        named = {'category', 'position'} | ({'colour'} if match['colour'] else set())
        group = [
            j
            for j, o in enumerate(objects)
            if o['category'] == match['category'] and match['colour'] in (None, o['colour'])
        ]
        if len(group) != 2:
            return group, named  # "the two" names a pair: anything else is ambiguous
        (xa, ya), (xb, yb) = (_centroid(objects[j]['mask']) for j in group)
        first = {'left': xa < xb, 'right': xa > xb, 'upper': ya < yb, 'lower': ya > yb}
        return [group[0] if first[match['rel']] else group[1]], named
    match = ABSOLUTE.fullmatch(sentence)
    assert match, f'sentence outside the promised grammar: {sentence!r}'
    named = {'category'} | {k for k in ('colour',) if match[k]}
    named |= {'position'} if match['where'] else set()
    found = [
        j
        for j, o in enumerate(objects)
        if o['category'] == match['category']
        and match['colour'] in (None, o['colour'])
        and (match['where'] is None or POSITIONS[match['where']](*_centroid(o['mask']), slack))
    ]
    return found, named


def _distractor_sample(synthetic, num=60, seed=0):
    for index in range(num):
        yield synthetic.make_scene(seed, index, 128, 1.8, task='distractors')


def test_distractor_sentences_pick_exactly_their_target(synthetic):
    for img, objects in _distractor_sample(synthetic):
        masks = np.stack([o['mask'] for o in objects])
        assert masks.sum(0).max() == 1  # objects do not overlap
        for j, obj in enumerate(objects):
            for slack in (-0.02, 0.0, 0.02):  # the grid's borders where a reader may put them
                found, named = _referents(obj['text'], objects, slack)
                assert found == [j], (
                    obj['text'],
                    slack,
                    [(o['colour'], o['category']) for o in objects],
                )
            assert named == set(obj['named'])
            colour = synthetic.COLOURS[obj['colour']]
            inside = img[obj['mask'].astype(bool)]
            assert (np.abs(inside.astype(int) - colour).max(-1) <= 2).mean() > 0.5


def test_distractor_kinds_and_sentence_forms_are_all_made(synthetic):
    kinds, forms, targets = Counter(), Counter(), 0
    for _, objects in _distractor_sample(synthetic):
        for j, obj in enumerate(objects):
            targets += 1
            others = objects[:j] + objects[j + 1 :]
            same_colour = {o['category'] for o in others if o['colour'] == obj['colour']}
            same_category = {o['colour'] for o in others if o['category'] == obj['category']}
            kinds['twin'] += obj['category'] in same_colour
            kinds['colour, other category'] += bool(same_colour - {obj['category']})
            kinds['category, other colour'] += bool(same_category - {obj['colour']})
            _, named = _referents(obj['text'], objects)
            forms['+'.join(sorted(named))] += 1
            forms['relational'] += bool(RELATIVE.fullmatch(obj['text']))
            if obj['category'] in same_colour:  # a twin: only the position words can decide
                assert 'position' in named, obj['text']
    assert targets >= 150
    for kind in ('twin', 'colour, other category', 'category, other colour'):
        assert kinds[kind] >= 0.2 * targets, kinds
    for form in (
        'category',
        'category+colour',
        'category+position',
        'category+colour+position',
        'relational',
    ):
        assert forms[form] >= 0.05 * targets, forms


def test_distractor_scenes_are_seeded_and_options_apply(synthetic):
    img_a, objs_a = synthetic.make_scene(2, 5, 96, task='distractors')
    img_b, objs_b = synthetic.make_scene(2, 5, 96, task='distractors')
    np.testing.assert_array_equal(img_a, img_b)
    assert [o['text'] for o in objs_a] == [o['text'] for o in objs_b]
    lone = synthetic.DistractorOptions(
        num_objects=(2, 2), twin_prob=0.0, colour_mate_prob=0.0, category_mate_prob=1.0
    )
    for index in range(10):
        _, objects = synthetic.make_scene(0, index, 96, task='distractors', options=lone)
        assert len(objects) == 2 and objects[0]['category'] == objects[1]['category']
        assert objects[0]['colour'] != objects[1]['colour']
    with pytest.raises(ValueError, match='twin_prob'):
        synthetic.DistractorOptions(twin_prob=1.5)
    with pytest.raises(ValueError, match='task'):
        synthetic.make_scene(0, 0, 64, task='shapes')


def test_distractor_datasets_load_as_before(synthetic, tmp_path):
    """Masks keep their format: both loaders read the distractor task's files as before."""
    from btdnet.datasets import RefSegRSDataset, RRSISDDataset
    from btdnet.datasets.transforms import LoadReferringMask, LoadRSImageFromFile

    cli.main([str(tmp_path), '--num-images', '5', '--size', '64', '--task', 'distractors'])
    meta = json.loads((tmp_path / 'synthetic_meta.json').read_text())
    assert meta['task'] == 'distractors' and meta['options']['twin_prob'] == 0.6
    records = json.loads((tmp_path / 'synthetic_objects.json').read_text())
    assert len(records) == sum(meta['samples'].values())
    scenes = {i: synthetic.make_scene(0, i, 64, task='distractors') for i in range(5)}
    for split in ('train', 'val', 'test'):
        rrsisd = RRSISDDataset(data_root=str(tmp_path), split=split)
        refsegrs = RefSegRSDataset(data_root=str(tmp_path / 'refsegrs'), split=split)
        assert len(rrsisd) == len(refsegrs) == meta['samples'][split]
        for i in range(len(rrsisd)):
            info, rs_info = rrsisd.get_data_info(i), refsegrs.get_data_info(i)
            index, k = divmod(int(info['sample_id']), 10)
            obj = scenes[index][1][k]
            assert info['text'] == rs_info['text'] == obj['text']
            assert info['category'] == obj['category']
            for mask_info in (info, rs_info):
                mask = LoadReferringMask()(LoadRSImageFromFile()(mask_info))['gt_seg_map']
                assert mask.dtype == np.uint8
                np.testing.assert_array_equal(mask, obj['mask'])
            record = next(r for r in records if r['sent_id'] == info['sample_id'])
            assert (record['colour'], record['text']) == (obj['colour'], obj['text'])


def test_split_scenes_render_a_split_again_from_its_meta(synthetic, tmp_path):
    """The app's examples and the existence-threshold tool re-render test scenes this way."""
    from btdnet.datasets import RRSISDDataset

    cli.main(
        [str(tmp_path), '--num-images', '9', '--eval-images', '2', '--size', '64']
        + ['--format', 'rrsisd', '--task', 'distractors', '--twin-prob', '1.0', '--seed', '3']
    )
    meta = json.loads((tmp_path / 'synthetic_meta.json').read_text())
    for split, expected in (('val', [5, 6]), ('test', [7, 8])):
        scenes = list(synthetic.split_scenes(meta, split))
        assert [index for index, _, _ in scenes] == expected
        texts = [obj['text'] for _, _, objects in scenes for obj in objects]
        dataset = RRSISDDataset(data_root=str(tmp_path), split=split)
        assert texts == [dataset.get_data_info(i)['text'] for i in range(len(dataset))]
        for index, image, _ in scenes:  # the JPEG on disk is this picture
            on_disk = cv2.imread(str(tmp_path / 'images/rrsisd/JPEGImages' / f'{index:05d}.jpg'))
            encoded = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
            np.testing.assert_array_equal(on_disk, cv2.imdecode(encoded, cv2.IMREAD_COLOR))
    # The options travel: without them (the defaults) another scene comes out.
    default = dict(meta, options=None)
    first = next(synthetic.split_scenes(meta, 'test', limit=1))
    other = next(synthetic.split_scenes(default, 'test', limit=1))
    assert [o['text'] for o in first[2]] != [o['text'] for o in other[2]] or not np.array_equal(
        first[1], other[1]
    )
    assert len(list(synthetic.split_scenes(meta, 'test', limit=1))) == 1
    with pytest.raises(ValueError, match='split: expected one of'):
        next(synthetic.split_scenes(meta, 'testing'))


def test_distractor_options_need_the_distractor_task(synthetic, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main([str(tmp_path), '--twin-prob', '0.5'])
    assert '--twin-prob only apply to --task distractors' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([str(tmp_path), '--task', 'distractors', '--num-objects', '3', '2'])
    assert 'num_objects' in capsys.readouterr().err
    assert not (tmp_path / 'synthetic_meta.json').exists()


def test_category_marks_stay_inside_their_objects(synthetic):
    plain = synthetic.DistractorOptions(category_marks=False)
    marked_kinds = set()
    for index in range(10):
        img, objects = synthetic.make_scene(0, index, 128, 1.8, task='distractors')
        bare, same = synthetic.make_scene(0, index, 128, 1.8, task='distractors', options=plain)
        assert [o['text'] for o in objects] == [o['text'] for o in same]  # only paint differs
        changed = np.any(img != bare, axis=-1)
        for obj in objects:
            inside = changed & obj['mask'].astype(bool)
            if obj['category'] in ('vehicle', 'tennis court', 'building'):
                assert inside.any(), obj['category']
                marked_kinds.add(obj['category'])
                colour = np.array(synthetic.COLOURS[obj['colour']])
                assert (img[inside] <= colour).all()  # darker shades of the object's colour
            else:
                assert not inside.any(), obj['category']
        union = np.any([o['mask'] for o in objects], axis=0)
        assert not (changed & ~union).any()
    assert marked_kinds == {'vehicle', 'tennis court', 'building'}


def test_synthetic_scene_mosaic_holds_the_generator_scenes_of_its_task(synthetic, tmp_path):
    import rasterio

    scene_tool = load_tool('dataset_converters/make_synthetic_scene.py')
    path = tmp_path / 'mosaic.tif'
    argv = [str(path), '--size', '192', '--patch', '96', '--dtype', 'uint8', '--seed', '4']
    assert scene_tool.main([*argv, '--task', 'distractors', '--object-scale', '1.8']) == 0
    with rasterio.open(path) as src:
        data = src.read()
        assert src.crs.to_epsg() == 32633 and src.res == (0.5, 0.5)
    for r in range(2):
        for c in range(2):
            image, _ = synthetic.make_scene(4, r * 2 + c, 96, 1.8, 'distractors')
            patch = data[:, r * 96 : (r + 1) * 96, c * 96 : (c + 1) * 96]
            np.testing.assert_array_equal(patch, np.maximum(image[..., ::-1], 1).transpose(2, 0, 1))
    colours = synthetic.write_scene(str(tmp_path / 'colours.tif'), 192, 96, 4, 1.8, 'uint8')
    assert colours != synthetic.write_scene(
        str(tmp_path / 'distractors.tif'), 192, 96, 4, 1.8, 'uint8', task='distractors'
    )


# ----------------------------------------------------------------------- the generalized task
COUNTS = {'two': 2, 'three': 3, 'four': 4}
WHERE = f'(?: (?P<where>{"|".join(POSITIONS)}))?'
PLURAL = re.compile(f'(?P<all>all )?the (?:(?P<count>two|three|four) )?{NOUN}s{WHERE}')


def _generalized_referents(sentence, objects, slack):
    """The set a generalized sentence names, read on the masks' centroids (borders moved by
    ``slack``); singular sentences as the distractor task reads them."""
    match = PLURAL.fullmatch(sentence)
    if match is None:
        return set(_referents(sentence, objects, slack)[0])
    found = {
        j
        for j, o in enumerate(objects)
        if o['category'] == match['category']
        and match['colour'] in (None, o['colour'])
        and (match['where'] is None or POSITIONS[match['where']](*_centroid(o['mask']), slack))
    }
    if match['count'] and found:
        assert len(found) == COUNTS[match['count']], sentence
    return found


def test_generalized_sentences_name_exactly_their_set(synthetic):
    kinds = Counter()
    for index in range(80):
        _, objects = synthetic.make_scene(3, index, 128, 1.8, task='generalized')
        sentences = synthetic.referring_sentences(3, index, objects, synthetic.GeneralizedOptions())
        assert [s.text for s in sentences[: len(objects)]] == [o['text'] for o in objects]
        assert len({s.text for s in sentences}) == len(sentences)  # no sentence twice
        for sentence in sentences:
            kinds[sentence.kind.split(':')[0]] += 1
            for slack in (-0.02, 0.0, 0.02):
                found = _generalized_referents(sentence.text, objects, slack)
                assert found == set(sentence.targets), (sentence, slack)
            if sentence.kind == 'several':
                assert len(sentence.targets) >= 2
            else:
                assert len(sentence.targets) == (sentence.kind == 'one')
    total = sum(kinds.values())
    assert 0.15 <= kinds['no target'] / total <= 0.25, kinds
    assert 0.15 <= kinds['several'] / total <= 0.25, kinds


def test_generalized_no_target_kinds_and_plural_forms_are_all_made(synthetic):
    kinds, forms = Counter(), Counter()
    for index in range(150):
        _, objects = synthetic.make_scene(0, index, 128, 1.8, task='generalized')
        for sentence in synthetic.referring_sentences(
            0, index, objects, synthetic.GeneralizedOptions()
        ):
            kinds[sentence.kind] += 1
            if match := PLURAL.fullmatch(sentence.text):
                forms['all' if match['all'] else 'count' if match['count'] else 'plain'] += 1
                forms['where'] += bool(match['where'])
    for kind in ('absent pairing', 'wrong position', 'absent colour', 'absent category'):
        assert kinds[f'no target: {kind}'] >= 10, kinds
    assert min(forms.values()) >= 10 and len(forms) == 4, forms


def test_generalized_reader_refuses_ambiguity_and_unknown_grammar(synthetic):
    def obj(colour, category, x, y):
        return dict(colour=colour, category=category, centre=(x, y))

    objects = [
        obj('red', 'ship', 0.1, 0.5),
        obj('red', 'ship', 0.9, 0.5),
        obj('blue', 'ship', 0.5, 0.1),
    ]
    read = synthetic.read_referents
    assert read('the red ships', objects) == (0, 1)
    assert read('the two red ships', objects) == (0, 1)
    assert read('the three red ships', objects) is None  # a count that does not match
    assert read('the red ship', objects) is None  # a singular that fits two
    assert read('the blue ships', objects) is None  # a plural that fits one
    assert read('the ships at the top', objects) is None  # one ship, said as several
    assert read('the ships on the left', objects) is None  # 1 of 3
    assert read('all the ships', objects) == (0, 1, 2)
    assert read('the white ship', objects) == ()
    assert read('the red ship at the top', objects) == ()
    assert read('the left one of the two red ships', objects) == (0,)
    objects.append(obj('white', 'airplane', 0.66, 0.9))  # on the border of the right third
    assert read('the airplane on the right', objects) is None
    with pytest.raises(ValueError, match='outside the generalized grammar'):
        read('the red ship please', objects)


def test_generalized_dataset_in_the_grefcoco_layout(synthetic, tmp_path, capsys):
    out = tmp_path / 'g'
    cli.main([str(out), '--task', 'generalized', '--num-images', '12', '--size', '64'])
    refs = json.loads((out / 'grefs' / 'grefs(unc).json').read_text())
    coco = json.loads((out / 'grefs' / 'instances.json').read_text())
    meta = json.loads((out / 'synthetic_meta.json').read_text())
    assert sum(meta['samples'].values()) == len(refs) == sum(meta['kinds'].values())
    anns = {a['id']: a for a in coco['annotations']}
    for ref in refs:
        assert ref['file_name'] == f'{ref["image_id"]:05d}.jpg'
        assert ref['no_target'] == (ref['ann_id'] == [-1]) == (ref['category_id'] == [-1])
        for ann_id in [] if ref['no_target'] else ref['ann_id']:
            assert anns[ann_id]['image_id'] == ref['image_id']
        assert (out / 'images' / 'grefs' / ref['file_name']).is_file()
    assert any(r['no_target'] for r in refs) and any(len(r['ann_id']) > 1 for r in refs)
    with pytest.raises(SystemExit):
        cli.main([str(tmp_path / 'x'), '--task', 'generalized', '--format', 'rrsisd'])
    assert '--task generalized writes the gRefCOCO layout only' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([str(tmp_path / 'y'), '--no-target-share', '0.3'])
    assert 'only apply to --task generalized' in capsys.readouterr().err
    with pytest.raises(ValueError, match='gRefCOCO layout'):
        synthetic.generate(str(tmp_path / 'z'), num_images=4, task='generalized')
