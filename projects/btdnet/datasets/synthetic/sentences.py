"""The sentences of the synthetic distractor task, and the check that each names its target.

Position words name regions of a 3 x 3 grid of thirds, read loosely as a person would; every
sentence is checked against the objects' colours, categories and centres
(:func:`describe_options`), so that it picks out exactly its target.
"""

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


def choose_sentence(rng, options: list, opts) -> tuple[str, tuple]:
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
