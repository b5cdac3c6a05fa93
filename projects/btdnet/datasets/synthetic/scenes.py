"""Synthetic aerial scenes: a textured ground with roads and coloured objects, each with a sentence.

Each scene holds objects of the two benchmarks' categories (vehicle, storage tank, building,
ship, tennis court, airplane), each the target of its own sentence. Scene ``i`` of a dataset
depends only on ``(seed, i)`` and the options. Two tasks:

* ``colours``: 2-4 objects, each in its own colour; every sentence names colour, category and
  position ("the red vehicle on the left"), and the colour word alone decides.
* ``distractors``: 1-5 objects (3-5 asked for; those that do not fit are left out) sharing colours
  and categories: next to an anchor object, a *twin* (same colour and category: only position
  words tell them apart), a *colour mate* (same colour, another category) and a *category mate*
  (same category, another colour), each with its own probability (:class:`DistractorOptions`).
  Sentences name what they need, as a speaker would: "the airplane", "the red ship", "the
  vehicle on the left", "the white building at the top right", "the upper one of the two red
  vehicles". Every sentence is checked to pick out exactly its target from the objects'
  colours, categories and centres (:func:`~.sentences.describe_options`); a placement that would
  leave any object without such a sentence is re-drawn.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from .sentences import choose_sentence, describe_options

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
# 'generalized' scenes are 'distractors' scenes; the task adds no- and several-target sentences
# (see .generalized).
TASKS = ('colours', 'distractors', 'generalized')


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
        obj['text'], obj['named'] = choose_sentence(rng, describe_options(j, objects), opts)
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
            target out (:func:`describe_options`). ``'generalized'``: the scene of
            ``'distractors'`` (its sentences with no or several targets come from
            :func:`~.generalized.referring_sentences`).
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


def split_of(index: int, num_images: int, eval_images: int | None = None) -> str:
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
    indices = [i for i in range(total) if split_of(i, total, eval_images) == split]
    for index in indices[:limit]:
        image, objects = make_scene(
            meta['seed'], index, meta['size'], meta['object_scale'], task, options
        )
        yield index, image, objects
