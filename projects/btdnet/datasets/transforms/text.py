"""Key noun phrases of a referring expression, as character spans (for the masked text E_m)."""

import functools

from mmcv.transforms import BaseTransform
from mmengine.logging import print_log
from mmseg.registry import TRANSFORMS

# A noun phrase: optional determiner, modifiers (adjectives, participles, numbers), then nouns.
DEFAULT_GRAMMAR = 'NP: {<DT|PRP\\$>?<JJ.*|VBN|VBG|CD>*<NN.*>+}'

_TAGGER = None
_WARNED_NO_NOUN = False


def get_tagger():
    """NLTK's English perceptron tagger, loaded once per process.

    ``nltk.pos_tag`` reloads the tagger's weights on every call (~0.5 s); this keeps one.

    Raises:
        LookupError: The tagger data is not installed, with how to install it.
    """
    global _TAGGER
    if _TAGGER is None:
        from nltk.tag.perceptron import PerceptronTagger

        try:
            _TAGGER = PerceptronTagger(lang='eng')
        except LookupError as exc:
            raise LookupError(
                "Expected NLTK's POS tagger `averaged_perceptron_tagger_eng`, found it nowhere on "
                'the NLTK data path. Install it with `python -m nltk.downloader '
                'averaged_perceptron_tagger_eng`, or point the environment variable NLTK_DATA at '
                'a folder holding taggers/averaged_perceptron_tagger_eng/ (`make install` puts '
                'one in .venv/nltk_data).'
            ) from exc
    return _TAGGER


@functools.lru_cache(maxsize=4)
def _parser(grammar: str):
    from nltk import RegexpParser

    return RegexpParser(grammar)


@functools.lru_cache(maxsize=1)
def _word_tokenizer():
    from nltk.tokenize import TreebankWordTokenizer

    return TreebankWordTokenizer()


@functools.lru_cache(maxsize=65536)
def key_phrase_spans(
    text: str, all_phrases: bool = False, grammar: str = DEFAULT_GRAMMAR
) -> tuple[tuple[int, int], ...]:
    """Character spans of the nouns in the referent's noun phrase(s).

    The sentence is split with NLTK's ``TreebankWordTokenizer`` (``span_tokenize`` gives each
    word's characters), tagged with the perceptron POS tagger (what ``nltk.pos_tag`` uses) and
    chunked with a ``RegexpParser`` noun-phrase grammar. Results are cached per sentence.

    Args:
        text (str): The referring expression.
        all_phrases (bool): Nouns of every noun phrase instead of the first one only.
        grammar (str): The ``RegexpParser`` grammar; its chunks labelled ``NP`` are noun phrases.

    Returns:
        tuple[tuple[int, int], ...]: ``[start, end)`` character spans of ``text``, in order;
        empty when the sentence has no noun.
    """
    tokenizer = _word_tokenizer()
    spans = list(tokenizer.span_tokenize(text))
    if not spans:
        return ()
    # The tokenizer's own words (quotes become `` and '') tag better than the raw characters.
    words = tokenizer.tokenize(text)
    if len(words) != len(spans):
        words = [text[s:e] for s, e in spans]
    tagged = [(i, tag) for i, (_, tag) in enumerate(get_tagger().tag(words))]
    # Chunk (index, tag) pairs so each leaf remembers which word (and span) it is.
    tree = _parser(grammar).parse(tagged)
    out = []
    for node in tree:
        if hasattr(node, 'label') and node.label() == 'NP':
            out.extend(
                spans[i]
                for i, tag in node.leaves()
                if tag.startswith('NN') and any(c.isalnum() for c in words[i])
            )
            if not all_phrases:
                break
    return tuple(out)


@TRANSFORMS.register_module()
class ExtractKeyPhraseSpans(BaseTransform):
    """Find the referent's key nouns (NLTK POS tags + noun-phrase chunking) as character spans.

    The text encoder turns the tokens inside these spans into ``[PAD]`` to build the masked text
    E_m (paper Sec. III-A). By default the nouns of the first noun phrase ("the red *vehicle* on
    the left" -> ``[[8, 15]]``); ``all_phrases=True`` takes every noun phrase's nouns. A sentence
    with no noun gets no spans (said once in the log). The tagger loads when the transform is
    built, so a missing tagger fails at config time with how to install it.

    Required Keys:

    - text (str)

    Added Keys:

    - key_spans (list[list[int]]: ``[start, end)`` character spans into ``text``)

    Args:
        all_phrases (bool): Use the nouns of all noun phrases. Default: False (first phrase).
        grammar (str): ``RegexpParser`` grammar with an ``NP`` rule. Default:
            :data:`DEFAULT_GRAMMAR`.
    """

    def __init__(self, all_phrases: bool = False, grammar: str = DEFAULT_GRAMMAR):
        self.all_phrases = all_phrases
        self.grammar = grammar
        get_tagger()
        _parser(grammar)

    def transform(self, results: dict) -> dict:
        global _WARNED_NO_NOUN
        text = results['text']
        spans = key_phrase_spans(text, self.all_phrases, self.grammar)
        if not spans and text.strip() and not _WARNED_NO_NOUN:
            _WARNED_NO_NOUN = True
            print_log(
                f'sample_id {results.get("sample_id")}: no noun found in {text!r}; nothing '
                'is masked in its E_m (said once)',
                logger='current',
                level=30,
            )
        results['key_spans'] = [list(s) for s in spans]
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(all_phrases={self.all_phrases}, grammar={self.grammar!r})'
