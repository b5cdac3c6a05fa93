"""Synthetic referring remote-sensing data: seeded aerial-like scenes whose sentences are checked.

* :mod:`.scenes`: :func:`make_scene` renders scene ``i`` of a seeded dataset (image, objects
  with their masks and sentences) for the ``colours`` and ``distractors`` tasks;
  :func:`split_scenes` renders a split again from a dataset's ``synthetic_meta.json``.
* :mod:`.sentences`: the position words and :func:`describe_options`, which lists the sentences
  that pick out exactly one object.
* :mod:`.generalized`: the generalized task's sentences with no target or several targets
  (:func:`referring_sentences`) and its reader (:func:`read_referents`).
* :mod:`.writer`: :func:`generate` writes a dataset in the RRSIS-D, RefSegRS and gRefCOCO layouts;
  :func:`write_scene` writes a mosaic of scenes as one GeoTIFF.

The command lines are ``tools/dataset_converters/make_synthetic_rrsis.py`` and
``make_synthetic_scene.py``; ``make demo``, the web app's examples and the benchmarks use this
package directly.
"""

from .generalized import (
    GeneralizedOptions,
    ReferringSentence,
    read_referents,
    referring_sentences,
)
from .scenes import (
    CATEGORIES,
    COLOURS,
    SPLITS,
    TASKS,
    DistractorOptions,
    make_scene,
    split_of,
    split_scenes,
)
from .sentences import POSITION_WORDS, describe_options, distractor_kinds
from .writer import FORMATS, generate, write_scene

__all__ = [
    'CATEGORIES',
    'COLOURS',
    'FORMATS',
    'GeneralizedOptions',
    'ReferringSentence',
    'POSITION_WORDS',
    'SPLITS',
    'TASKS',
    'DistractorOptions',
    'describe_options',
    'distractor_kinds',
    'generate',
    'make_scene',
    'read_referents',
    'referring_sentences',
    'split_of',
    'split_scenes',
    'write_scene',
]
