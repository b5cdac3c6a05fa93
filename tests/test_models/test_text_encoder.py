"""BertTextEncoder: tokenisation, key-phrase masking, staged forward, local loading."""

import logging
from unittest import mock

import pytest
import torch
from mmseg.registry import MODELS

from btdnet.models.text_encoders import BertTextEncoder
from btdnet.models.text_encoders import bert_text_encoder as bte

TINY_BERT = dict(
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=2,
    intermediate_size=64,
    vocab_size=30522,
    max_position_embeddings=64,
)


def tiny_encoder(**kwargs):
    torch.manual_seed(0)
    cfg = dict(type='BertTextEncoder', bert_config=TINY_BERT, stage_layers=(1, 2, 3, 4))
    cfg.update(kwargs)
    return MODELS.build(cfg).eval()


def _span(text, word):
    start = text.index(word)
    return (start, start + len(word))


def tokens_of(enc, ids):
    return enc.tokenizer.convert_ids_to_tokens(ids.tolist())


def test_tokenize_shapes_and_key_span_masking():
    enc = tiny_encoder()
    text = 'the red vehicle on the left'
    out = enc.tokenize([text], [[_span(text, 'vehicle')]])
    assert set(out) == {'input_ids', 'attention_mask', 'masked_input_ids', 'masked_attention_mask'}
    for v in out.values():
        assert v.shape == (1, 20) and v.dtype == torch.long
    toks = tokens_of(enc, out['input_ids'][0])
    assert toks[:8] == ['[CLS]', 'the', 'red', 'vehicle', 'on', 'the', 'left', '[SEP]']
    assert set(toks[8:]) == {'[PAD]'}
    assert out['attention_mask'][0].tolist() == [1] * 8 + [0] * 12
    masked = tokens_of(enc, out['masked_input_ids'][0])
    assert masked[:8] == ['[CLS]', 'the', 'red', '[PAD]', 'on', 'the', 'left', '[SEP]']
    assert out['masked_attention_mask'][0].tolist() == [1, 1, 1, 0] + [1] * 4 + [0] * 12


def test_masking_covers_every_word_piece_and_several_spans():
    enc = tiny_encoder()
    text = 'two windmills near the storage tank'
    spans = [_span(text, 'windmills'), _span(text, 'storage tank')]
    out = enc.tokenize([text], [spans])
    toks = tokens_of(enc, out['input_ids'][0])
    keep = out['masked_attention_mask'][0].bool()
    masked_words = [t for t, k in zip(toks, keep) if not k and t != '[PAD]']
    kept_words = [t for t, k in zip(toks, keep) if k]
    assert ''.join(masked_words).replace('##', '') == 'windmillsstoragetank'
    assert kept_words == ['[CLS]', 'two', 'near', 'the', '[SEP]']
    # a span touching only part of a word piece masks that piece
    out = enc.tokenize([text], [[(5, 7)]])  # 'in' inside 'windmills'
    assert (out['masked_attention_mask'][0] == 0).sum() - (out['attention_mask'][0] == 0).sum() == 1


def test_no_key_span_masks_nothing_and_logs_once():
    enc = tiny_encoder()
    with mock.patch.object(bte, 'print_log') as log:
        out = enc.tokenize(['a lake', 'a road'], [[], []])
        enc.tokenize(['a field'], [[]])
    assert torch.equal(out['masked_input_ids'], out['input_ids'])
    assert torch.equal(out['masked_attention_mask'], out['attention_mask'])
    assert log.call_count == 1 and 'no key span' in log.call_args[0][0]
    off = tiny_encoder(key_phrase_masking=False)
    text = 'the red vehicle'
    out = off.tokenize([text], [[_span(text, 'red')]])
    assert torch.equal(out['masked_input_ids'], out['input_ids'])


def test_long_sentence_truncated_with_one_warning():
    enc = tiny_encoder()
    long_text = ' '.join(['building'] * 200)
    with mock.patch.object(bte, 'print_log') as log:
        out = enc.tokenize([long_text, 'a car'], None)
        enc.tokenize([long_text], None)
    assert out['input_ids'].shape == (2, 20)
    assert out['attention_mask'][0].tolist() == [1] * 20
    toks = tokens_of(enc, out['input_ids'][0])
    assert toks[0] == '[CLS]' and toks[-1] == '[SEP]' and set(toks[1:-1]) == {'building'}
    warnings = [c for c in log.call_args_list if c.kwargs.get('level') == logging.WARNING]
    assert len(warnings) == 1 and 'truncated' in warnings[0][0][0]


def test_empty_sentence_is_cls_sep():
    enc = tiny_encoder()
    out = enc.tokenize(['', 'a ship'], [[], [(2, 6)]])
    assert tokens_of(enc, out['input_ids'][0])[:3] == ['[CLS]', '[SEP]', '[PAD]']
    assert out['attention_mask'][0].sum() == 2
    feats = enc(out['input_ids'], out['attention_mask'])
    assert feats.shape == (2, 20, 32) and torch.isfinite(feats).all()


def test_staged_forward_equals_huggingface():
    enc = tiny_encoder()
    out = enc.tokenize(['the red vehicle on the left', 'a small pond'], None)
    ids, mask = out['input_ids'], out['attention_mask']
    with torch.no_grad():
        full = enc(ids, mask)
        hidden = enc.embed(ids)
        for i in range(enc.num_stages):
            hidden = enc.forward_stage(i, hidden, mask)
        hf = enc.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    assert enc.hidden_size == 32 and enc.num_stages == 4
    assert torch.equal(hidden, full)
    real = mask.bool()
    torch.testing.assert_close(full[real], hf[real], atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_real_tokens():
    enc = tiny_encoder()
    long_pad = tiny_encoder(max_length=28)
    long_pad.load_state_dict(enc.state_dict())
    texts = ['the red vehicle on the left', 'a pond']
    a = enc.tokenize(texts, None)
    b = long_pad.tokenize(texts, None)
    assert b['input_ids'].shape == (2, 28)
    with torch.no_grad():
        fa = enc(a['input_ids'], a['attention_mask'])
        fb = long_pad(b['input_ids'], b['attention_mask'])
        scrambled = a['input_ids'].masked_fill(a['attention_mask'] == 0, 1000)
        fc = enc(scrambled, a['attention_mask'])
    real = a['attention_mask'].bool()
    torch.testing.assert_close(fb[:, :20][real], fa[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fc[real], fa[real], atol=1e-5, rtol=1e-5)


def test_tokens_follow_the_model_device_and_init_keeps_weights():
    enc = tiny_encoder()
    out = enc.tokenize(['a road'], None)
    assert all(v.device == enc.bert.embeddings.word_embeddings.weight.device for v in out.values())
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    enc.init_weights()
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())


def test_local_pretrained_directory_round_trip(tmp_path):
    enc = tiny_encoder()
    enc.bert.save_pretrained(tmp_path)
    enc.tokenizer.save_pretrained(tmp_path)
    loaded = BertTextEncoder(pretrained=str(tmp_path), stage_layers=(1, 2, 3, 4)).eval()
    out = enc.tokenize(['the red vehicle'], None)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(out['input_ids'], out['attention_mask']),
            enc(out['input_ids'], out['attention_mask']),
        )


def test_a_pooler_left_out_by_design_is_not_reported_but_other_unused_keys_are(tmp_path):
    """A BERT saved with its pooler (as all-MiniLM-L6-v2 and bert-base ship): the pooler goes
    unused by design and is not listed on every run; any other unused key still is."""
    from transformers import BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    enc = tiny_encoder()
    with_pooler = BertModel(BertConfig(**TINY_BERT), add_pooling_layer=True)
    with_pooler.save_pretrained(tmp_path / 'pooler')
    enc.tokenizer.save_pretrained(tmp_path / 'pooler')
    state = dict(with_pooler.state_dict(), **{'extra.weight': torch.zeros(2)})
    with_pooler.save_pretrained(tmp_path / 'extra', state_dict=state)
    enc.tokenizer.save_pretrained(tmp_path / 'extra')
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    hf_logger = hf_logging.get_logger('transformers.modeling_utils')
    hf_logger.addHandler(handler)
    try:
        BertModel.from_pretrained(tmp_path / 'pooler', add_pooling_layer=False)  # as it was
        assert len(records) == 1 and 'pooler.dense.weight' in records[0]
        BertTextEncoder(pretrained=str(tmp_path / 'pooler'), stage_layers=(1, 2, 3, 4))
        assert len(records) == 1  # nothing more
        BertTextEncoder(pretrained=str(tmp_path / 'extra'), stage_layers=(1, 2, 3, 4))
        assert len(records) == 2 and "BertModel: ['extra.weight']" in records[1]  # no pooler
    finally:
        hf_logger.removeHandler(handler)


def test_custom_vocab_file(tmp_path):
    vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'the', 'red', 'car', 'left', 'on']
    (tmp_path / 'vocab.txt').write_text('\n'.join(vocab) + '\n')
    cfg = dict(TINY_BERT, vocab_size=len(vocab))
    enc = BertTextEncoder(
        bert_config=cfg, stage_layers=(2, 4), tokenizer=str(tmp_path / 'vocab.txt'), max_length=8
    )
    out = enc.tokenize(['the red car on the left'], [[(4, 7)]])
    assert out['input_ids'][0].tolist() == [2, 5, 6, 7, 9, 5, 8, 3]
    assert out['masked_input_ids'][0].tolist() == [2, 5, 0, 7, 9, 5, 8, 3]
    assert enc.num_stages == 2


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='bert-base-uncased') as err:
        BertTextEncoder(pretrained=str(tmp_path / 'missing_bert'))
    assert 'missing_bert' in str(err.value)
    with pytest.raises(ValueError, match='exactly one'):
        BertTextEncoder()
    with pytest.raises(ValueError, match='exactly one'):
        BertTextEncoder(pretrained=str(tmp_path), bert_config=TINY_BERT)
    with pytest.raises(ValueError, match=r'stage_layers.*\(1, 2, 3\)'):
        BertTextEncoder(bert_config=TINY_BERT, stage_layers=(1, 2, 3))
    with pytest.raises(ValueError, match='30522 tokens'):
        BertTextEncoder(bert_config=dict(TINY_BERT, vocab_size=100), stage_layers=(1, 2, 3, 4))
    enc = tiny_encoder()
    with pytest.raises(IndexError, match='4 stages'):
        enc.forward_stage(4, torch.zeros(1, 20, 32), torch.ones(1, 20))


def test_freeze_word_embeddings_keeps_only_that_table_fixed():
    from btdnet.models.text_encoders import BertTextEncoder

    tiny = dict(
        vocab_size=30522,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    encoder = BertTextEncoder(bert_config=tiny, stage_layers=(1, 2), freeze_word_embeddings=True)
    frozen = [n for n, p in encoder.named_parameters() if not p.requires_grad]
    assert frozen == ['bert.embeddings.word_embeddings.weight']
    tokens = encoder.tokenize(['the red vehicle'], [[[8, 15]]])
    encoder(tokens['input_ids'], tokens['attention_mask']).sum().backward()
    assert encoder.bert.embeddings.word_embeddings.weight.grad is None
    assert encoder.bert.embeddings.position_embeddings.weight.grad is not None


def test_frozen_layers_fix_weights_and_dropout_but_pass_gradients():
    tiny = dict(TINY_BERT, hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5)
    encoder = tiny_encoder(bert_config=tiny, frozen_layers=2).train()
    trainable = {n.split('.')[3] for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == {'2', '3'}  # bert.encoder.layer.{2,3}.*; embeddings and layers 0-1 fixed
    frozen = [encoder.bert.embeddings, *encoder.bert.encoder.layer[:2]]
    assert all(not m.training for f in frozen for m in f.modules())
    assert all(m.training for m in encoder.bert.encoder.layer[2].modules())
    # Frozen layers run without dropout: the first stages are deterministic in train mode.
    tokens = encoder.tokenize(['the red vehicle on the left'])
    hidden = encoder.embed(tokens['input_ids'])
    hidden.requires_grad_(True)
    out_a = encoder.forward_stage(
        1, encoder.forward_stage(0, hidden, tokens['attention_mask']), tokens['attention_mask']
    )
    out_b = encoder.forward_stage(
        1, encoder.forward_stage(0, hidden, tokens['attention_mask']), tokens['attention_mask']
    )
    torch.testing.assert_close(out_a, out_b)
    # ... and still pass gradients to their input (the BSCs of earlier stages).
    out_a.sum().backward()
    assert hidden.grad is not None and hidden.grad.abs().sum() > 0
    assert all(p.grad is None for f in frozen for p in f.parameters())
    # eval() and back to train() keeps them frozen in eval mode.
    encoder.eval().train()
    assert not encoder.bert.encoder.layer[1].training and encoder.bert.encoder.layer[2].training
    with pytest.raises(ValueError, match=r'frozen_layers must be in \[0, 4\]'):
        tiny_encoder(frozen_layers=5)


def test_all_layers_frozen_leave_nothing_to_train():
    encoder = tiny_encoder(frozen_layers=4)
    assert not any(p.requires_grad for p in encoder.parameters())


def test_a_frozen_bert_caches_its_outputs_per_sentence():
    plain = tiny_encoder(frozen_layers=4)
    cached = tiny_encoder(frozen_layers=4, cache_size=3)
    texts = ['the red vehicle on the left', 'the two ships', 'the storage tanks', 'a dam']
    tokens = plain.tokenize(texts)
    ids, mask = tokens['input_ids'], tokens['attention_mask']
    calls = []
    real = cached.forward_stage
    cached.forward_stage = lambda i, h, m: calls.append(h.shape[0]) or real(i, h, m)
    expected = plain(ids, mask)
    torch.testing.assert_close(cached(ids[:2], mask[:2]), expected[:2])
    assert calls == [2] * 4  # two new sentences, four stages
    calls.clear()
    # Two of these are cached; the other two are computed, and only one of them fits (size 3).
    torch.testing.assert_close(
        cached(ids[[1, 0, 2, 3]], mask[[1, 0, 2, 3]]), expected[[1, 0, 2, 3]]
    )
    assert calls == [2] * 4 and len(cached._cache) == 3
    calls.clear()
    torch.testing.assert_close(cached(ids, mask), expected)
    assert calls == [1] * 4  # the sentence that did not fit is computed again
    # A BERT that still learns is never cached.
    assert tiny_encoder(frozen_layers=3, cache_size=10).cache_size == 0
