"""ExtractKeyPhraseSpans: NLTK tags + noun-phrase chunks -> character spans of the referent."""

import pytest

from btdnet.datasets.transforms import ExtractKeyPhraseSpans, key_phrase_spans
from btdnet.datasets.transforms import text as text_module


def _words(text, spans):
    return [text[s:e] for s, e in spans]


@pytest.mark.parametrize(
    'text, first, every',
    [
        ('the red vehicle on the left', ['vehicle'], ['vehicle', 'left']),
        ('white storage tank at the bottom', ['storage', 'tank'], ['storage', 'tank', 'bottom']),
        ('A large ship in the harbor', ['ship'], ['ship', 'harbor']),
    ],
)
def test_first_and_all_noun_phrases(text, first, every):
    t = ExtractKeyPhraseSpans()
    assert _words(text, t(dict(text=text))['key_spans']) == first
    assert (
        _words(text, ExtractKeyPhraseSpans(all_phrases=True)(dict(text=text))['key_spans']) == every
    )


def test_spans_follow_the_characters():
    text = '  the   "red"  vehicle\ton the left '
    spans = ExtractKeyPhraseSpans()(dict(text=text))['key_spans']
    assert _words(text, spans) == ['vehicle'] and spans == [
        [text.index('vehicle'), text.index('vehicle') + 7]
    ]


def test_no_noun_and_empty(log_messages):
    text_module._WARNED_NO_NOUN = False
    t = ExtractKeyPhraseSpans()
    assert t(dict(text='', sample_id='a'))['key_spans'] == []
    assert t(dict(text='very quickly', sample_id='b'))['key_spans'] == []
    assert t(dict(text='is big', sample_id='c'))['key_spans'] == []
    assert sum('no noun' in m for m in log_messages) == 1


def test_long_and_non_ascii_sentences():
    long_text = ' '.join(['the small blue vehicle beside the long road'] * 25)
    spans = ExtractKeyPhraseSpans()(dict(text=long_text))['key_spans']
    assert _words(long_text, spans) == ['vehicle']
    text = 'the château near the café'
    spans = ExtractKeyPhraseSpans(all_phrases=True)(dict(text=text))['key_spans']
    assert all(text[s:e] in text.split() for s, e in spans) and 'café' in _words(text, spans)


def test_cached_per_sentence():
    text = 'the cached orange airplane at the top'
    before = key_phrase_spans.cache_info()
    for _ in range(5):
        ExtractKeyPhraseSpans()(dict(text=text))
    after = key_phrase_spans.cache_info()
    assert after.misses - before.misses == 1 and after.hits - before.hits == 4


def test_custom_grammar():
    grammar = 'NP: {<NN.*>+}'  # bare nouns only: "left" alone is a phrase as well
    out = ExtractKeyPhraseSpans(grammar=grammar, all_phrases=True)(dict(text='a tank on the left'))
    assert _words('a tank on the left', out['key_spans']) == ['tank', 'left']
    assert 'NN' in repr(ExtractKeyPhraseSpans(grammar=grammar))


def test_missing_tagger_says_how_to_install(monkeypatch, tmp_path):
    import nltk

    monkeypatch.setattr(text_module, '_TAGGER', None)
    monkeypatch.setattr(nltk.data, 'path', [str(tmp_path)])
    with pytest.raises(
        LookupError, match='nltk.downloader averaged_perceptron_tagger_eng.*NLTK_DATA'
    ):
        ExtractKeyPhraseSpans()
