from .augmentation import RandomBlackBoxes
from .formatting import REFERRING_META_KEYS, PackReferringInputs
from .loading import LoadReferringMask, LoadRSImageFromFile
from .text import DEFAULT_GRAMMAR, ExtractKeyPhraseSpans, get_tagger, key_phrase_spans

__all__ = [
    'DEFAULT_GRAMMAR',
    'REFERRING_META_KEYS',
    'ExtractKeyPhraseSpans',
    'LoadReferringMask',
    'LoadRSImageFromFile',
    'PackReferringInputs',
    'RandomBlackBoxes',
    'get_tagger',
    'key_phrase_spans',
]
