"""Write a synthetic referring remote-sensing dataset in the RRSIS-D and/or RefSegRS layout.

Each scene is a textured ground with roads and objects of the two benchmarks' categories
(vehicle, storage tank, building, ship, tennis court, airplane), each a target of its own sentence.
Scene ``i`` depends only on ``(seed, i)`` (and the options). Two tasks (``--task``):

* ``colours`` (default): 2-4 objects, each in its own colour; every sentence names colour,
  category and position ("the red vehicle on the left"), and the colour word alone decides.
* ``distractors``: 1-5 objects (3-5 asked for; those that do not fit are left out) sharing colours
  and categories: next to an anchor object, a *twin* (same colour and category: only position
  words tell them apart), a *colour mate* (same colour, another category) and a *category mate*
  (same category, another colour), each with its own probability (:class:`DistractorOptions`).
  Sentences name what they need, as a speaker would: "the airplane", "the red ship", "the
  vehicle on the left", "the white building at the top right", "the upper one of the two red
  vehicles". Every sentence is checked to pick out exactly its target from the objects'
  colours, categories and centres (:func:`describe_options` says how); a placement that would
  leave any object without such a sentence is re-drawn.

Layouts written under OUT (see ``configs/_base_/datasets/{synthetic_rrsis,refsegrs}.py``)::

    OUT/rrsisd/refs(unc).p, OUT/rrsisd/instances.json, OUT/images/rrsisd/JPEGImages/*.jpg
    OUT/refsegrs/images/<id>.tif, OUT/refsegrs/masks/<id>.tif (0/255),
    OUT/refsegrs/output_phrase_{train,val,test}.txt

Example::

    python tools/dataset_converters/make_synthetic_rrsis.py data/synthetic_rrsis --format both \
        --num-images 300 --seed 0 --size 256
"""

import argparse
import json
import os
import os.path as osp
import pickle
import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from pycocotools import mask as mask_utils

CATEGORIES = ('vehicle', 'storage tank', 'building', 'ship', 'tennis court', 'airplane')
# name -> BGR; far from the ground's greens, browns and greys.
COLOURS = {
    'red': (40, 40, 220),
    'blue': (220, 90, 30),
    'yellow': (30, 220, 240),
    'white': (245, 245, 245),
    'orange': (20, 140, 255),
    'purple': (200, 40, 150),
}
GROUNDS = ((70, 110, 80), (60, 100, 120), (110, 120, 125), (80, 130, 110))  # BGR
# Side lengths as fractions of the image side: (length range, width / length range).
SHAPES = {
    'vehicle': ((0.09, 0.12), (0.45, 0.55)),
    'storage tank': ((0.10, 0.16), (1.0, 1.0)),
    'building': ((0.14, 0.22), (0.6, 0.9)),
    'ship': ((0.16, 0.24), (0.25, 0.32)),
    'tennis court': ((0.15, 0.20), (0.5, 0.6)),
    'airplane': ((0.15, 0.21), (0.9, 1.0)),
}
SPLITS = ('train', 'val', 'test')
TASKS = ('colours', 'distractors')


def _rotate(points: np.ndarray, angle: float, centre) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]]) + np.asarray(centre)


def _outline(category: str, length: float, width: float) -> list[np.ndarray]:
    """Polygons (centred at 0, unrotated, in pixels) that make up one object."""
    hl, hw = length / 2, width / 2
    if category == 'ship':  # a hull with a pointed bow
        return [np.array([[-hl, -hw], [hl - hw * 2, -hw], [hl, 0], [hl - hw * 2, hw], [-hl, hw]])]
    if category == 'airplane':  # fuselage + wings + tail
        fw = max(length * 0.08, 1.5)
        return [
            np.array([[-hl, -fw], [hl, -fw], [hl, fw], [-hl, fw]]),
            np.array([[-fw * 1.5, -hw], [fw * 1.5, -hw], [fw * 1.5, hw], [-fw * 1.5, hw]]),
            np.array(
                [
                    [-hl, -hw * 0.4],
                    [-hl + fw * 2, -hw * 0.4],
                    [-hl + fw * 2, hw * 0.4],
                    [-hl, hw * 0.4],
                ]
            ),
        ]
    return [np.array([[-hl, -hw], [hl, -hw], [hl, hw], [-hl, hw]])]


def _marks(category: str, length: float, width: float) -> list[tuple[np.ndarray, float]]:
    """Darker markings (polygons in the frame of :func:`_outline`, each with its brightness) that
    tell the rectangular categories apart at a glance, as on aerial photographs: a vehicle's
    windscreen and rear window, a tennis court's net and centre line, a building's roof ridge."""
    hl, hw = length / 2, width / 2
    line = 0.8  # half the width of a painted line, in pixels

    def box(x0, x1, y0, y1):
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])

    if category == 'vehicle':
        return [(box(hl * 0.2, hl * 0.5, -hw, hw), 0.35), (box(-hl * 0.8, -hl * 0.6, -hw, hw), 0.5)]
    if category == 'tennis court':
        return [(box(-line, line, -hw, hw), 0.5), (box(-hl * 0.55, hl * 0.55, -line, line), 0.5)]
    if category == 'building':
        return [(box(-hl, hl, -line, line), 0.55)]
    return []


def _position_words(cx: float, cy: float, size: int) -> str:
    col = 'left' if cx < size / 3 else 'right' if cx > 2 * size / 3 else ''
    row = 'top' if cy < size / 3 else 'bottom' if cy > 2 * size / 3 else ''
    if row and col:
        return f'at the {row} {col}'
    if row:
        return f'at the {row}'
    if col:
        return f'on the {col}'
    return 'in the middle'


# ----------------------------------------------------------------------- the distractor task
# Absolute position words: the region of the image (a 3 x 3 grid of thirds) each word names, as
# bounds on the object's centre (x, y) in units of the image side; None is the image border.
# An edge word is read loosely, as a person would: "at the top" is the whole top third, corners
# included; "in the middle" is the centre cell only.
_LEFT, _RIGHT, _MID = (None, 1 / 3), (2 / 3, None), (1 / 3, 2 / 3)
_TOP, _BOTTOM = _LEFT, _RIGHT
POSITION_WORDS = {
    'on the left': dict(x=_LEFT),
    'on the right': dict(x=_RIGHT),
    'at the top': dict(y=_TOP),
    'at the bottom': dict(y=_BOTTOM),
    'at the top left': dict(x=_LEFT, y=_TOP),
    'at the top right': dict(x=_RIGHT, y=_TOP),
    'at the bottom left': dict(x=_LEFT, y=_BOTTOM),
    'at the bottom right': dict(x=_RIGHT, y=_BOTTOM),
    'in the middle': dict(x=_MID, y=_MID),
}
# Relational words, "the left one of the two red vehicles": (word, axis, sign of target - other).
RELATIONS = (('left', 'x', -1), ('right', 'x', 1), ('upper', 'y', -1), ('lower', 'y', 1))
# A word holds for the target only with its centre this far (x the side) inside the region, and
# rules out another object only with that object's centre this far outside it; a relation needs
# the two centres this far apart along its axis.
POSITION_MARGIN = 0.04
RELATION_GAP = 0.15


@dataclass(frozen=True)
class DistractorOptions:
    """How ``task='distractors'`` fills a scene and words its sentences.

    Each scene starts from an anchor object (a random colour and category) and adds, each with
    its own probability, the three kinds of distractor: a *twin* (same colour and category,
    elsewhere: only position words tell the two apart), a *colour mate* (same colour, another
    category) and a *category mate* (same category, another colour); random objects fill the
    scene up to its size. Objects are placed without touching; a position that would leave any
    object without an unambiguous sentence is re-drawn (50 tries, then the object is left out).

    Args:
        num_objects (tuple[int, int]): Fewest and most objects asked for per scene (the
            distractors count; objects that do not fit are left out). Default (3, 5).
        twin_prob (float): Chance of a twin of the anchor. Default 0.6.
        colour_mate_prob (float): Chance of a colour mate of the anchor. Default 0.5.
        category_mate_prob (float): Chance of a category mate of the anchor. Default 0.5.
        colour_word_prob (float): Chance that a sentence names the colour where it could do
            without (speakers over-specify colour). Default 0.75.
        extra_word_prob (float): Chance that a sentence names the position where it could do
            without ("the red ship at the top" where "the red ship" would do). Default 0.15.
        relational_prob (float): Chance of relational position words ("the left one of the two
            red ships") where absolute ones ("the red ship on the left") would do too.
            Default 0.3.
        category_marks (bool): Paint the markings that tell the rectangular categories apart on
            aerial photographs (a vehicle's windscreen and rear window, a tennis court's net and
            centre line, a building's roof ridge); without them vehicles, tennis courts and
            buildings differ only in size and proportions. Default True.
    """

    num_objects: tuple = (3, 5)
    twin_prob: float = 0.6
    colour_mate_prob: float = 0.5
    category_mate_prob: float = 0.5
    colour_word_prob: float = 0.75
    extra_word_prob: float = 0.15
    relational_prob: float = 0.3
    category_marks: bool = True

    def __post_init__(self):
        lo, hi = self.num_objects
        if not 1 <= lo <= hi <= 9:
            raise ValueError(f'num_objects: expected 1 <= fewest <= most <= 9, found {(lo, hi)}')
        for name in self.__dataclass_fields__:
            if not name.endswith('_prob'):
                continue
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f'{name}: expected a probability in [0, 1], found {getattr(self, name)}'
                )


def _inside(centre, bounds: dict, pad: float) -> bool:
    """Whether a centre (fractions of the side) lies in a region grown by ``pad`` (< 0: shrunk)."""
    for axis, (low, high) in bounds.items():
        value = centre[0 if axis == 'x' else 1]
        if (low is not None and value <= low - pad) or (high is not None and value >= high + pad):
            return False
    return True


def describe_options(target: int, objects: list[dict]) -> list[tuple[str, tuple[str, ...]]]:
    """Every unambiguous sentence for ``objects[target]`` in its scene, with what it names.

    A sentence always names the category and picks out exactly one object of the scene:

    * ``the {category}`` / ``the {colour} {category}``: no other object has that category /
      colour and category (attributes are exact, so this check is exact);
    * ``... {position word}`` (:data:`POSITION_WORDS`): the target's centre lies in the word's
      region at least :data:`POSITION_MARGIN` of the side inside it, and every other object
      with the named attributes lies at least that far outside it (so a reader who places the
      borders a little differently still finds one object);
    * ``the {left|right|upper|lower} one of the two {colour} {category}s``: exactly two objects
      have the named attributes, and the target's centre is at least :data:`RELATION_GAP` of
      the side further in that direction than the other's.

    Args:
        target (int): Index of the object to describe.
        objects (list[dict]): The scene's objects, each with ``colour``, ``category`` and
            ``centre`` ((x, y) in fractions of the image side).

    Returns:
        list[tuple[str, tuple[str, ...]]]: ``(sentence, named)`` pairs, ``named`` a sub-tuple
        of ``('colour', 'category', 'position')``; empty when nothing describes it uniquely.
    """
    obj = objects[target]
    others = [o for j, o in enumerate(objects) if j != target]
    same_category = [o for o in others if o['category'] == obj['category']]
    options = []
    for named, rivals, noun in (
        (('category',), same_category, obj['category']),
        (
            ('colour', 'category'),
            [o for o in same_category if o['colour'] == obj['colour']],
            f'{obj["colour"]} {obj["category"]}',
        ),
    ):
        if not rivals:
            options.append((f'the {noun}', named))
        for word, bounds in POSITION_WORDS.items():
            if _inside(obj['centre'], bounds, -POSITION_MARGIN) and not any(
                _inside(o['centre'], bounds, POSITION_MARGIN) for o in rivals
            ):
                options.append((f'the {noun} {word}', (*named, 'position')))
        if len(rivals) == 1:
            for word, axis, sign in RELATIONS:
                k = 0 if axis == 'x' else 1
                if sign * (obj['centre'][k] - rivals[0]['centre'][k]) >= RELATION_GAP:
                    options.append((f'the {word} one of the two {noun}s', (*named, 'position')))
    return options


def _choose_sentence(rng, options: list, opts: 'DistractorOptions') -> tuple[str, tuple]:
    """Pick one of :func:`describe_options`' sentences as a speaker would.

    The category is always named. The colour is named with ``opts.colour_word_prob`` (speakers
    name colours even when not needed), or whenever no sentence without it is unambiguous (and
    left out whenever no sentence with it is). Position words come only where the rest does not
    pick the target out, or with ``opts.extra_word_prob``; relational words ("the left one of
    the two ...") with ``opts.relational_prob`` where absolute ones would do too, else only where
    they are the only choice. Among the words left, the choice is uniform.
    """
    with_colour = [o for o in options if 'colour' in o[1]]
    without = [o for o in options if 'colour' not in o[1]]
    if with_colour and without:
        options = with_colour if rng.random() < opts.colour_word_prob else without
    unplaced = [o for o in options if 'position' not in o[1]]
    placed = [o for o in options if 'position' in o[1]]
    if unplaced and not (placed and rng.random() < opts.extra_word_prob):
        options = unplaced
    else:
        relational = [o for o in placed if ' one of the two ' in o[0]]
        absolute = [o for o in placed if ' one of the two ' not in o[0]]
        if relational and absolute:
            options = relational if rng.random() < opts.relational_prob else absolute
        else:
            options = placed
    return options[rng.integers(len(options))]


def distractor_kinds(target: int, objects: list[dict]) -> set[str]:
    """Which distractors ``objects[target]`` has in its scene.

    Returns:
        set[str]: ``'category'`` (an object of the same category in another colour),
        ``'colour'`` (the same colour, another category), ``'twin'`` (the same colour and
        category).
    """
    obj, kinds = objects[target], set()
    for j, other in enumerate(objects):
        if j == target:
            continue
        same_colour, same_category = (
            other['colour'] == obj['colour'],
            other['category'] == obj['category'],
        )
        if same_colour and same_category:
            kinds.add('twin')
        elif same_category:
            kinds.add('category')
        elif same_colour:
            kinds.add('colour')
    return kinds


def _ground(rng, size: int) -> np.ndarray:
    """A textured ground with 1-2 roads (BGR uint8)."""
    # A smooth colour field plus fine grain (cheap: low-resolution noise, upsampled).
    base = np.array(GROUNDS[rng.integers(len(GROUNDS))], np.float32)
    low = rng.normal(0, 14, (8, 8, 1)) + rng.normal(0, 4, (8, 8, 3))
    low = low.astype(np.float32) + base
    img = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    img += rng.integers(-8, 9, (size, size, 1)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(1, 3)):  # roads with a dashed centre line
        pos, width = int(rng.uniform(0.1, 0.9) * size), max(3, int(0.05 * size))
        grey = int(rng.integers(95, 125))
        horizontal = rng.random() < 0.5
        p1, p2 = ((0, pos), (size, pos)) if horizontal else ((pos, 0), (pos, size))
        cv2.line(img, p1, p2, (grey, grey, grey + 5), width)
        for t in range(0, size, max(8, size // 16)):
            q1 = (t, pos) if horizontal else (pos, t)
            q2 = (t + size // 40, pos) if horizontal else (pos, t + size // 40)
            cv2.line(img, q1, q2, (200, 200, 200), 1)
    return img


def _draw(rng, img, category: str, colour: str, centre, length: float, width: float, marks=False):
    """Paint one object into ``img`` (a random heading) and return its 0/1 mask.

    ``marks`` adds the markings of :func:`_marks` (the distractor task), inside the mask. The
    drawing works on a window around the object (with a margin for the ring's erosion), which
    gives the pixels a whole-image drawing gives, faster.
    """
    cx, cy = centre
    size = img.shape[0]
    reach = np.hypot(length, width) / 2 + 6
    x0, y0 = max(0, int(cx - reach)), max(0, int(cy - reach))
    x1, y1 = min(size, int(cx + reach) + 1), min(size, int(cy + reach) + 1)
    offset = np.array([x0, y0])
    local = np.zeros((y1 - y0, x1 - x0), np.uint8)
    if category == 'storage tank':
        radius = int(np.hypot(length, width) / 2 / np.sqrt(2))
        cv2.circle(local, (int(cx) - x0, int(cy) - y0), radius, 1, -1)
    else:
        angle = rng.uniform(0, np.pi)
        for poly in _outline(category, length, width):  # one by one: overlaps stay filled
            points = np.round(_rotate(poly, angle, (cx, cy))).astype(np.int32) - offset
            cv2.fillPoly(local, [points], 1)
    window = img[y0:y1, x0:x1]
    region = local.astype(bool)
    window[region] = COLOURS[colour]
    if category in ('storage tank', 'building', 'tennis court'):  # an inner ring / line
        shade = tuple(int(v * 0.7) for v in COLOURS[colour])
        inner = cv2.erode(local, np.ones((5, 5), np.uint8))
        inner ^= cv2.erode(inner, np.ones((3, 3), np.uint8))
        window[inner.astype(bool)] = shade
    if marks and category != 'storage tank':
        for poly, brightness in _marks(category, length, width):
            mark = np.zeros_like(local)
            points = np.round(_rotate(poly, angle, (cx, cy))).astype(np.int32) - offset
            cv2.fillPoly(mark, [points], 1)
            window[mark.astype(bool) & region] = tuple(int(v * brightness) for v in COLOURS[colour])
    mask = np.zeros((size, size), np.uint8)
    mask[y0:y1, x0:x1] = local
    return mask


def _dimensions(rng, category: str, size: int, object_scale: float) -> tuple[float, float]:
    (lo, hi), (rlo, rhi) = SHAPES[category]
    length = rng.uniform(lo, hi) * size * object_scale
    return length, length * rng.uniform(rlo, rhi)


def _colour_objects(rng, img, size: int, object_scale: float) -> list[dict]:
    """The default task: 2-4 objects, each in its own colour; every sentence names colour,
    category and position."""
    count = int(rng.integers(2, 5))
    colours = rng.permutation(list(COLOURS))[:count]
    objects, placed = [], []
    for colour in colours:
        category = CATEGORIES[rng.integers(len(CATEGORIES))]
        (lo, hi), _ = SHAPES[category]
        length, width = _dimensions(rng, category, size, object_scale)
        radius = np.hypot(length, width) / 2
        for _ in range(50):  # rejection sampling: objects do not touch
            cx, cy = rng.uniform(radius + 2, size - radius - 2, 2)
            if all(np.hypot(cx - x, cy - y) > radius + r + 3 for x, y, r in placed):
                break
        else:
            continue
        placed.append((cx, cy, radius))
        mask = _draw(rng, img, category, colour, (cx, cy), length, width)
        size_word = (
            'large '
            if length > (lo + hi) / 2 * size * object_scale * 1.05
            else 'small '
            if length < (lo + hi) / 2 * size * object_scale * 0.95
            else ''
        )
        where = _position_words(cx, cy, size)
        template = int(rng.integers(3))
        if template == 0:
            text = f'the {colour} {category} {where}'
        elif template == 1:
            text = f'{colour} {category} {where}'
        else:
            text = f'the {size_word}{colour} {category} {where}'
        objects.append(
            dict(
                category=category,
                colour=colour,
                text=text,
                mask=mask,
                centre=(cx / size, cy / size),
                named=('colour', 'category', 'position'),
            )
        )
    return objects


def _distractor_objects(rng, img, size: int, object_scale: float, opts) -> list[dict]:
    """The distractor task (see :class:`DistractorOptions` and :func:`describe_options`)."""
    colour0 = list(COLOURS)[rng.integers(len(COLOURS))]
    category0 = CATEGORIES[rng.integers(len(CATEGORIES))]
    specs = [(colour0, category0)]
    if rng.random() < opts.twin_prob:
        specs.append((colour0, category0))
    if rng.random() < opts.colour_mate_prob:
        others = [c for c in CATEGORIES if c != category0]
        specs.append((colour0, others[rng.integers(len(others))]))
    if rng.random() < opts.category_mate_prob:
        others = [c for c in COLOURS if c != colour0]
        specs.append((others[rng.integers(len(others))], category0))
    count = int(rng.integers(opts.num_objects[0], opts.num_objects[1] + 1))
    while len(specs) < count:
        specs.append(
            (list(COLOURS)[rng.integers(len(COLOURS))], CATEGORIES[rng.integers(len(CATEGORIES))])
        )
    objects, placed = [], []
    for colour, category in specs:
        length, width = _dimensions(rng, category, size, object_scale)
        radius = np.hypot(length, width) / 2
        for _ in range(50):  # objects do not touch, and every object keeps a unique sentence
            cx, cy = rng.uniform(radius + 2, size - radius - 2, 2)
            if not all(np.hypot(cx - x, cy - y) > radius + r + 3 for x, y, r in placed):
                continue
            candidate = dict(colour=colour, category=category, centre=(cx / size, cy / size))
            scene = [*objects, candidate]
            if all(describe_options(j, scene) for j in range(len(scene))):
                break
        else:
            continue
        placed.append((cx, cy, radius))
        candidate['mask'] = _draw(
            rng, img, category, colour, (cx, cy), length, width, opts.category_marks
        )
        objects.append(candidate)
    for j, obj in enumerate(objects):
        obj['text'], obj['named'] = _choose_sentence(rng, describe_options(j, objects), opts)
    return objects


def make_scene(
    seed: int,
    index: int,
    size: int = 256,
    object_scale: float = 1.0,
    task: str = 'colours',
    options: DistractorOptions | None = None,
):
    """Render scene ``index`` of a dataset seeded with ``seed``.

    Args:
        seed (int): Dataset seed.
        index (int): Scene number; the scene depends only on ``(seed, index)`` (and the other
            arguments).
        size (int): Image side in pixels.
        object_scale (float): Multiplies every object's size (the CPU demo uses larger objects,
            so that a model with a stride-4 output can draw their outlines). Default 1.0.
        task (str): ``'colours'`` (default): 2-4 objects, each in its own colour, every sentence
            "the {colour} {category} {position}"; the colour word alone decides.
            ``'distractors'``: objects share colours and categories (see
            :class:`DistractorOptions`), and each sentence names what it needs to pick its
            target out (:func:`describe_options`).
        options (DistractorOptions, optional): Settings of the distractor task; None for the
            defaults.

    Returns:
        tuple: ``image`` (np.uint8, (size, size, 3), BGR) and a list of objects, each a dict with
        ``category``, ``colour``, ``text``, ``mask`` (np.uint8, (size, size), 0/1), ``centre``
        ((x, y), the placed centre in fractions of the side) and ``named`` (what the sentence
        names, a sub-tuple of ``('colour', 'category', 'position')``).
    """
    if task not in TASKS:
        raise ValueError(f'task: expected one of {TASKS}, found {task!r}')
    rng = np.random.default_rng([seed, index])
    img = _ground(rng, size)
    if task == 'colours':
        return img, _colour_objects(rng, img, size, object_scale)
    return img, _distractor_objects(rng, img, size, object_scale, options or DistractorOptions())


def _split_of(index: int, num_images: int, eval_images: int | None = None) -> str:
    """Scenes in order: train, then val, then test. ``eval_images`` scenes each in val and test;
    None: 15% each (every split non-empty from 3 images on)."""
    if eval_images is None:
        eval_images = max(1, round(num_images * 0.15)) if num_images >= 3 else 0
    n_train = num_images - 2 * eval_images
    return 'train' if index < n_train else 'val' if index < n_train + eval_images else 'test'


def split_scenes(meta: dict, split: str = 'test', limit: int | None = None):
    """Render again the scenes of one split of a dataset, from its ``synthetic_meta.json``.

    Args:
        meta (dict): The dataset's ``synthetic_meta.json`` contents (or the same keys):
            ``num_images``, ``seed``, ``size``, ``object_scale``, and where the dataset has them
            ``eval_images``, ``task`` and ``options``.
        split (str): ``'train'``, ``'val'`` or ``'test'``.
        limit (int, optional): At most this many scenes (the first ones).

    Yields:
        tuple: ``(index, image, objects)``, ``image`` and ``objects`` as :func:`make_scene`
        returns them; ``index`` names the image file (``{index:05d}.jpg``).
    """
    if split not in SPLITS:
        raise ValueError(f'split: expected one of {SPLITS}, found {split!r}')
    task = meta.get('task', 'colours')
    options = meta.get('options')
    if options is not None:
        options = DistractorOptions(**{**options, 'num_objects': tuple(options['num_objects'])})
    total, eval_images = meta['num_images'], meta.get('eval_images')
    indices = [i for i in range(total) if _split_of(i, total, eval_images) == split]
    for index in indices[:limit]:
        image, objects = make_scene(
            meta['seed'], index, meta['size'], meta['object_scale'], task, options
        )
        yield index, image, objects


def generate(
    out_dir: str,
    num_images: int = 300,
    seed: int = 0,
    size: int = 256,
    formats=('rrsisd', 'refsegrs'),
    jpeg_quality: int = 95,
    verbose: bool = False,
    object_scale: float = 1.0,
    task: str = 'colours',
    options: DistractorOptions | None = None,
    eval_images: int | None = None,
):
    """Write the dataset; returns the number of samples (sentences) per split.

    Besides the layouts, ``OUT/synthetic_meta.json`` keeps the arguments (to re-render any scene
    with :func:`make_scene`), the samples per split and two tallies over all sentences: what
    they name (``named``) and which distractors their targets have (``distractors``, see
    :func:`distractor_kinds`). ``OUT/synthetic_objects.json`` lists every sentence with its
    target's attributes: ``sent_id`` (the RRSIS-D layout's sample id), ``refsegrs_id``,
    ``image_id``, ``split``, ``text``, ``colour``, ``category``, ``centre`` and ``named``.

    Args:
        out_dir (str): Output root.
        num_images (int): Number of scenes.
        seed (int): Seed; the same seed gives the same files.
        size (int): Image side in pixels.
        formats (Sequence[str]): Any of 'rrsisd', 'refsegrs'.
        jpeg_quality (int): JPEG quality of the RRSIS-D images.
        verbose (bool): Print progress.
        object_scale (float): Multiplies every object's size (see :func:`make_scene`).
        task (str): ``'colours'`` or ``'distractors'`` (see :func:`make_scene`).
        options (DistractorOptions, optional): Settings of the distractor task.
        eval_images (int, optional): Scenes in each of val and test (the last ones); the rest
            train. None (default): 15% each. The CPU demo trains on many scenes and keeps its
            val and test small, since it validates during its short training.
    """
    if task not in TASKS:
        raise ValueError(f'task: expected one of {TASKS}, found {task!r}')
    if eval_images is not None and not 0 <= 2 * eval_images < num_images:
        raise ValueError(
            f'eval_images: expected 0 <= eval_images and 2 x eval_images < num_images '
            f'({num_images}) so that training keeps a scene; found {eval_images}'
        )
    if options is not None and task != 'distractors':
        raise ValueError(f"options: only task='distractors' takes them, found task={task!r}")
    options = options or DistractorOptions()
    unknown = set(formats) - {'rrsisd', 'refsegrs'}
    if unknown:
        raise ValueError(f'expected formats among rrsisd, refsegrs; found {sorted(unknown)}')
    rrsisd, refsegrs = 'rrsisd' in formats, 'refsegrs' in formats
    img_dir = osp.join(out_dir, 'images', 'rrsisd', 'JPEGImages')
    rs_root = osp.join(out_dir, 'refsegrs')
    if rrsisd:
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(osp.join(out_dir, 'rrsisd'), exist_ok=True)
    if refsegrs:
        os.makedirs(osp.join(rs_root, 'images'), exist_ok=True)
        os.makedirs(osp.join(rs_root, 'masks'), exist_ok=True)
    refs, images, annotations = [], [], []
    phrases = {split: [] for split in SPLITS}
    counts = dict.fromkeys(SPLITS, 0)
    named_counts, kind_counts, records = {}, dict.fromkeys(('category', 'colour', 'twin'), 0), []
    start = time.perf_counter()
    for index in range(num_images):
        img, objects = make_scene(seed, index, size, object_scale, task, options)
        split = _split_of(index, num_images, eval_images)
        file_name = f'{index:05d}.jpg'
        if rrsisd:
            cv2.imwrite(osp.join(img_dir, file_name), img, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            images.append(dict(id=index, file_name=file_name, height=size, width=size))
        if refsegrs:  # one encoding per scene, written once per referred object
            scene_tif = cv2.imencode('.tif', img)[1]
        for k, obj in enumerate(objects):
            counts[split] += 1
            uid = index * 10 + k
            named = '+'.join(obj['named'])
            named_counts[named] = named_counts.get(named, 0) + 1
            for kind in distractor_kinds(k, objects):
                kind_counts[kind] += 1
            records.append(
                dict(
                    sent_id=str(uid),
                    refsegrs_id=f'{index:05d}_{k}',
                    image_id=index,
                    split=split,
                    text=obj['text'],
                    colour=obj['colour'],
                    category=obj['category'],
                    centre=[round(float(v), 4) for v in obj['centre']],
                    named=list(obj['named']),
                )
            )
            if rrsisd:
                rle = mask_utils.encode(np.asfortranarray(obj['mask']))
                x, y, w, h = (int(v) for v in mask_utils.toBbox(rle))
                annotations.append(
                    dict(
                        id=uid,
                        image_id=index,
                        categories_id=CATEGORIES.index(obj['category']),
                        segmentation=[dict(size=rle['size'], counts=rle['counts'].decode('ascii'))],
                        area=int(mask_utils.area(rle)),
                        bbox=[x, y, x + w, y + h],
                        iscrowd=0,
                    )
                )
                refs.append(
                    dict(
                        ref_id=uid,
                        ann_id=uid,
                        image_id=index,
                        split=split,
                        category_id=CATEGORIES.index(obj['category']),
                        file_name=file_name,
                        sentences=[
                            dict(
                                raw=obj['text'],
                                sent=obj['text'],
                                tokens=obj['text'].split(),
                                sent_id=uid,
                            )
                        ],
                        sent_ids=[uid],
                    )
                )
            if refsegrs:
                sid = f'{index:05d}_{k}'
                scene_tif.tofile(osp.join(rs_root, 'images', f'{sid}.tif'))
                cv2.imwrite(osp.join(rs_root, 'masks', f'{sid}.tif'), obj['mask'] * 255)
                phrases[split].append(f'{sid} {obj["text"]}')
        if verbose and ((index + 1) % max(1, num_images // 10) == 0 or index + 1 == num_images):
            rate = (index + 1) / (time.perf_counter() - start)
            print(
                f'[make_synthetic_rrsis] {index + 1}/{num_images} images ({rate:.0f} images/s)',
                flush=True,
            )
    if rrsisd:
        with open(osp.join(out_dir, 'rrsisd', 'refs(unc).p'), 'wb') as f:
            pickle.dump(refs, f, protocol=2)
        coco = dict(
            images=images,
            annotations=annotations,
            categories=[dict(id=i, name=n) for i, n in enumerate(CATEGORIES)],
        )
        with open(osp.join(out_dir, 'rrsisd', 'instances.json'), 'w') as f:
            json.dump(coco, f)
    if refsegrs:
        for split, lines in phrases.items():
            with open(osp.join(rs_root, f'output_phrase_{split}.txt'), 'w') as f:
                f.write(''.join(line + '\n' for line in lines))
    with open(osp.join(out_dir, 'synthetic_objects.json'), 'w') as f:
        json.dump(records, f)
    meta = dict(
        num_images=num_images,
        eval_images=eval_images,
        seed=seed,
        size=size,
        object_scale=object_scale,
        formats=list(formats),
        samples=counts,
        task=task,
        named=dict(sorted(named_counts.items())),
        distractors=kind_counts,
    )
    if task == 'distractors':
        meta['options'] = asdict(options)
    with open(osp.join(out_dir, 'synthetic_meta.json'), 'w') as f:  # to re-render any scene
        json.dump(meta, f)
    return counts


def _flag(option: str) -> str:
    """The command-line flag of a :class:`DistractorOptions` field."""
    return '--no-category-marks' if option == 'category_marks' else '--' + option.replace('_', '-')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out_dir', help='output root, e.g. data/synthetic_rrsis')
    parser.add_argument('--format', choices=('rrsisd', 'refsegrs', 'both'), default='both')
    parser.add_argument('--num-images', type=int, default=300)
    parser.add_argument(
        '--eval-images',
        type=int,
        help='scenes in each of val and test (the last ones; default: 15%% each)',
    )
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', type=int, default=256, help='image side in pixels')
    parser.add_argument(
        '--object-scale',
        type=float,
        default=1.0,
        help='multiply object sizes (objects 9-24%% of the image side at 1.0)',
    )
    parser.add_argument(
        '--task',
        choices=TASKS,
        default='colours',
        help='colours: every object in its own colour, the colour word decides (default); '
        'distractors: objects share colours and categories, sentences name what they need',
    )
    defaults = DistractorOptions()
    group = parser.add_argument_group('distractor task (--task distractors)')
    group.add_argument(
        '--num-objects',
        type=int,
        nargs=2,
        metavar=('FEWEST', 'MOST'),
        help=f'objects asked for per scene (default {defaults.num_objects[0]} '
        f'{defaults.num_objects[1]})',
    )
    for name, what in (
        ('twin_prob', 'a twin of the anchor object (same colour and category)'),
        ('colour_mate_prob', 'an object of the same colour, another category'),
        ('category_mate_prob', 'an object of the same category, another colour'),
        ('colour_word_prob', 'naming the colour where the sentence could do without'),
        ('extra_word_prob', 'naming the position where the sentence could do without'),
        ('relational_prob', 'relational position words where absolute ones would do'),
    ):
        group.add_argument(
            '--' + name.replace('_', '-'),
            type=float,
            help=f'chance of {what} (default {getattr(defaults, name)})',
        )
    group.add_argument(
        '--no-category-marks',
        dest='category_marks',
        action='store_false',
        default=None,
        help='paint vehicles, tennis courts and buildings without their markings',
    )
    args = parser.parse_args(argv)
    given = {
        k: tuple(v) if k == 'num_objects' else v
        for k, v in vars(args).items()
        if k in DistractorOptions.__dataclass_fields__ and v is not None
    }
    if args.eval_images is not None and not 0 <= 2 * args.eval_images < args.num_images:
        parser.error(
            f'--eval-images {args.eval_images}: expected >= 0 and less than half of '
            f'--num-images {args.num_images} (training keeps a scene)'
        )
    if given and args.task != 'distractors':
        parser.error(f'{", ".join(_flag(k) for k in given)} only apply to --task distractors')
    try:
        args.options = DistractorOptions(**given) if args.task == 'distractors' else None
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv=None):
    args = parse_args(argv)
    formats = ('rrsisd', 'refsegrs') if args.format == 'both' else (args.format,)
    start = time.perf_counter()
    counts = generate(
        args.out_dir,
        args.num_images,
        args.seed,
        args.size,
        formats,
        verbose=True,
        object_scale=args.object_scale,
        task=args.task,
        options=args.options,
        eval_images=args.eval_images,
    )
    seconds = time.perf_counter() - start
    meta = json.loads(open(osp.join(args.out_dir, 'synthetic_meta.json')).read())
    print(
        f'[make_synthetic_rrsis] wrote {args.num_images} images ({formats}) to {args.out_dir} '
        f'in {seconds:.1f} s ({args.num_images / seconds:.0f} images/s); samples per split: '
        f'{counts}\n[make_synthetic_rrsis] sentences naming {meta["named"]}; targets with a '
        f'distractor of the same category / colour / both (twin): {meta["distractors"]}'
    )


if __name__ == '__main__':
    main()
