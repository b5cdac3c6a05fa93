"""The generalized task: sentences that name no object, one object, or several.

On top of a distractor scene (:func:`~.scenes.make_scene` with ``task='distractors'``), a scene
gets, besides its one sentence per object, sentences with **no target** and sentences with
**several targets**, each phrased as a speaker would:

* no target: an absent colour and category pairing whose colour and category each occur ("the
  red ship" beside a red airplane and a white ship), a present pairing at the wrong place ("the
  red vehicle at the top" where the only red vehicle is at the bottom), an absent colour ("the
  purple airplane" where nothing is purple), an absent category ("the storage tank");
* several targets: "the storage tanks", "all the white buildings", "the two red vehicles",
  "the vehicles on the left".

Every sentence is read again by :func:`read_referents`, this module's own reader of the grammar
below, and must name exactly its set (no object for a no-target sentence). Position words keep
the distractor task's margins: every object with the named attributes lies at least
:data:`~.sentences.POSITION_MARGIN` of the side inside or outside the region, so a reader who
puts the borders a little elsewhere reads the same set.

Grammar (``NOUN`` = ``[colour] category``, ``WHERE`` = a key of
:data:`~.sentences.POSITION_WORDS`)::

    the NOUN [WHERE]                              one object, or none
    the {left|right|upper|lower} one of the two NOUNs
    [all] the NOUNs [WHERE]  |  the {two|three|four} NOUNs [WHERE]     two or more, or none
"""

import re
from dataclasses import dataclass

import numpy as np

from .scenes import CATEGORIES, COLOURS
from .sentences import POSITION_MARGIN, POSITION_WORDS, RELATION_GAP, RELATIONS, _inside

COUNT_WORDS = {2: 'two', 3: 'three', 4: 'four'}
_COUNTS = {word: n for n, word in COUNT_WORDS.items()}
# About this share of distractor scenes has two objects of one category (1,000 scenes of the
# demo's settings: 0.805); the scenes that can have several-target sentences get 1 / this more.
SEVERAL_TARGET_SUPPLY = 0.8
# No-target kinds and how often each is asked for where the scene allows it.
NO_TARGET_KINDS = {
    'absent pairing': 0.35,
    'wrong position': 0.35,
    'absent colour': 0.15,
    'absent category': 0.15,
}
_NOUN = f'(?:(?P<colour>{"|".join(COLOURS)}) )?(?P<category>{"|".join(CATEGORIES)})'
_WHERE = f'(?: (?P<where>{"|".join(POSITION_WORDS)}))?'
_SINGULAR = re.compile(f'the {_NOUN}{_WHERE}')
_RELATIONAL = re.compile(f'the (?P<rel>left|right|upper|lower) one of the two {_NOUN}s')
_PLURAL = re.compile(
    f'(?P<all>all )?the (?:(?P<count>{"|".join(COUNT_WORDS.values())}) )?{_NOUN}s{_WHERE}'
)


@dataclass(frozen=True)
class GeneralizedOptions:
    """How many sentences of a generalized scene name no object or several.

    A scene with ``n`` objects has ``n`` one-object sentences; it gets on average
    ``n * share / (1 - no_target_share - multi_target_share)`` sentences of each other kind (the
    several-target ones divided by :data:`SEVERAL_TARGET_SUPPLY`, since a scene where no two
    objects share their category has none), so that over a dataset about ``no_target_share``
    of the sentences name nothing and about ``multi_target_share`` several objects
    (``synthetic_meta.json`` gives the counts a dataset has).

    Args:
        no_target_share (float): Share of no-target sentences. Default 0.2.
        multi_target_share (float): Share of several-target sentences. Default 0.2.
        plural_no_target_prob (float): Chance that a no-target sentence is plural ("the blue
            ships") where it can be. Default 0.2.
    """

    no_target_share: float = 0.2
    multi_target_share: float = 0.2
    plural_no_target_prob: float = 0.2

    def __post_init__(self):
        shares = (self.no_target_share, self.multi_target_share)
        if min(shares) < 0 or sum(shares) >= 1:
            raise ValueError(
                'no_target_share and multi_target_share: expected >= 0 and a sum below 1, '
                f'found {shares}'
            )
        if not 0.0 <= self.plural_no_target_prob <= 1.0:
            raise ValueError(
                f'plural_no_target_prob: expected a probability, found {self.plural_no_target_prob}'
            )


@dataclass(frozen=True)
class ReferringSentence:
    """One sentence of a scene and the objects it names.

    Attributes:
        text (str): The sentence.
        targets (tuple[int, ...]): Indices of the scene's objects it names; empty for none.
        kind (str): ``'one'``, ``'several'`` or ``'no target: <kind>'`` (a key of
            :data:`NO_TARGET_KINDS`).
    """

    text: str
    targets: tuple
    kind: str


def _matching(objects: list[dict], colour: str | None, category: str) -> list[int]:
    return [
        j
        for j, o in enumerate(objects)
        if o['category'] == category and colour in (None, o['colour'])
    ]


def _in_region(objects: list[dict], group: list[int], where: str | None):
    """The members of ``group`` inside the region of ``where``, or None when one of them lies
    within the margin of its border (a reader could count it either way)."""
    if where is None:
        return group
    bounds = POSITION_WORDS[where]
    inside = [j for j in group if _inside(objects[j]['centre'], bounds, -POSITION_MARGIN)]
    outside = [j for j in group if not _inside(objects[j]['centre'], bounds, POSITION_MARGIN)]
    return inside if len(inside) + len(outside) == len(group) else None


def read_referents(text: str, objects: list[dict]):
    """The objects a sentence names, read from the objects' colours, categories and centres.

    Args:
        text (str): A sentence of the grammar in the module docstring.
        objects (list[dict]): The scene's objects (``colour``, ``category``, ``centre``).

    Returns:
        tuple[int, ...] | None: The indices named (empty: none), or None when the sentence is
        ambiguous: a singular that fits several objects, a count that does not match, a plural
        that fits one, an object on the margin of a position word's region.

    Raises:
        ValueError: The sentence is outside the grammar.
    """
    if match := _RELATIONAL.fullmatch(text):
        pair = _matching(objects, match['colour'], match['category'])
        if len(pair) != 2:
            return None
        axis, sign = next((a, s) for w, a, s in RELATIONS if w == match['rel'])
        k = 0 if axis == 'x' else 1
        gap = objects[pair[0]]['centre'][k] - objects[pair[1]]['centre'][k]
        if abs(gap) < RELATION_GAP:
            return None
        return (pair[0],) if sign * gap > 0 else (pair[1],)
    singular = _SINGULAR.fullmatch(text)
    match = singular or _PLURAL.fullmatch(text)
    if match is None:
        raise ValueError(f'a sentence outside the generalized grammar: {text!r}')
    named = _in_region(
        objects, _matching(objects, match['colour'], match['category']), match['where']
    )
    if named is None:
        return None
    if singular:
        return tuple(named) if len(named) <= 1 else None
    if len(named) == 1 or (match['count'] and named and len(named) != _COUNTS[match['count']]):
        return None
    return tuple(named)


def _nouns(objects: list[dict]) -> list[tuple]:
    """``(colour or None, category)`` of every noun phrase that names an object of the scene."""
    pairs = {(o['colour'], o['category']) for o in objects}
    return sorted({(None, c) for _, c in pairs} | pairs, key=lambda p: (p[1], p[0] or ''))


def several_target_options(objects: list[dict]) -> dict:
    """Every several-target sentence of a scene, grouped by the set it names.

    Returns:
        dict: ``targets`` (tuple of indices, two or more) -> list of sentences naming exactly
        that set.
    """
    options = {}
    for colour, category in _nouns(objects):
        noun = f'{colour} {category}' if colour else category
        group = _matching(objects, colour, category)
        for where in (None, *POSITION_WORDS):
            named = _in_region(objects, group, where)
            if named is None or len(named) < 2:
                continue
            tail = f' {where}' if where else ''
            texts = [f'the {noun}s{tail}', f'all the {noun}s{tail}']
            if len(named) in COUNT_WORDS:
                texts.append(f'the {COUNT_WORDS[len(named)]} {noun}s{tail}')
            options.setdefault(tuple(named), []).extend(texts)
    return options


def no_target_options(objects: list[dict]) -> dict:
    """Every no-target noun phrase of a scene, by kind (see :data:`NO_TARGET_KINDS`).

    Returns:
        dict: kind -> list of ``(noun, where)``: the noun phrase (``[colour] category``) and a
        position word or None; ``the {noun} {where}`` names no object of the scene.
    """
    colours = {o['colour'] for o in objects}
    categories = {o['category'] for o in objects}
    pairs = {(o['colour'], o['category']) for o in objects}
    options = {kind: [] for kind in NO_TARGET_KINDS}
    for category in CATEGORIES:
        if category not in categories:
            options['absent category'].append((category, None))
            continue
        for colour in COLOURS:
            if colour not in colours:
                options['absent colour'].append((f'{colour} {category}', None))
            elif (colour, category) not in pairs:
                options['absent pairing'].append((f'{colour} {category}', None))
    for colour, category in _nouns(objects):
        group = _matching(objects, colour, category)
        for where in POSITION_WORDS:
            if _in_region(objects, group, where) == []:
                options['wrong position'].append(
                    (f'{colour} {category}' if colour else category, where)
                )
    return options


def _how_many(rng, mean: float) -> int:
    """A count with the given mean: its integer part, plus one with the fraction's chance."""
    return int(mean) + int(rng.random() < mean - int(mean))


def _no_target_sentence(rng, options: dict, opts: GeneralizedOptions) -> ReferringSentence:
    kinds = [k for k in NO_TARGET_KINDS if options[k]]
    weights = np.array([NO_TARGET_KINDS[k] for k in kinds])
    kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
    noun, where = options[kind].pop(rng.integers(len(options[kind])))
    plural = rng.random() < opts.plural_no_target_prob
    text = f'the {noun}{"s" if plural else ""}{f" {where}" if where else ""}'
    return ReferringSentence(text, (), f'no target: {kind}')


def scene_sentences(
    rng, objects: list[dict], opts: GeneralizedOptions | None = None
) -> list[ReferringSentence]:
    """All sentences of one generalized scene: one per object, then several-target and no-target
    ones. Each is checked with :func:`read_referents`.

    Args:
        rng (np.random.Generator): The scene's generator (its own stream, so that the objects
            and their sentences are those of the distractor task).
        objects (list[dict]): The scene's objects with their sentences (``text``).
        opts (GeneralizedOptions, optional): The shares; None for the defaults.

    Returns:
        list[ReferringSentence]: The scene's sentences.
    """
    opts = opts or GeneralizedOptions()
    rest = 1.0 - opts.no_target_share - opts.multi_target_share
    sentences = [ReferringSentence(o['text'], (j,), 'one') for j, o in enumerate(objects)]
    several = several_target_options(objects)
    sets = list(several)
    wanted = len(objects) * opts.multi_target_share / rest / SEVERAL_TARGET_SUPPLY
    for _ in range(min(len(sets), _how_many(rng, wanted) if sets else 0)):
        targets = sets.pop(rng.integers(len(sets)))
        texts = several[targets]
        sentences.append(ReferringSentence(texts[rng.integers(len(texts))], targets, 'several'))
    absent = no_target_options(objects)
    for _ in range(_how_many(rng, len(objects) * opts.no_target_share / rest)):
        if not any(absent.values()):
            break
        sentences.append(_no_target_sentence(rng, absent, opts))
    for sentence in sentences:
        if read_referents(sentence.text, objects) != sentence.targets:
            raise AssertionError(
                f'the generalized task made {sentence.text!r} for objects {sentence.targets}, '
                f'which its reader reads as {read_referents(sentence.text, objects)}'
            )
    return sentences


def referring_sentences(
    seed: int, index: int, objects: list[dict], generalized: GeneralizedOptions | None = None
) -> list[ReferringSentence]:
    """The sentences of scene ``index`` of a dataset seeded with ``seed``.

    Args:
        seed (int): Dataset seed.
        index (int): Scene number.
        objects (list[dict]): The scene's objects, as :func:`~.scenes.make_scene` returns them.
        generalized (GeneralizedOptions, optional): The generalized task's settings; None for
            the other tasks (one sentence per object).

    Returns:
        list[ReferringSentence]: One per object first (the object's own sentence), then, for the
        generalized task, the several-target and no-target ones (from a random stream of their
        own: the objects are those of the distractor task with the same seed).
    """
    if generalized is None:
        return [ReferringSentence(o['text'], (j,), 'one') for j, o in enumerate(objects)]
    return scene_sentences(np.random.default_rng([seed, index, 1]), objects, generalized)
