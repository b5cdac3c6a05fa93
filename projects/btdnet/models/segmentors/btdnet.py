"""BTDNet segmentor: image + sentence -> mask of the referred object (Eq. 1-14 end to end)."""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
from mmengine.config import ConfigDict
from mmseg.models.segmentors.encoder_decoder import EncoderDecoder
from mmseg.registry import MODELS
from mmseg.utils import (
    ConfigType,
    OptConfigType,
    OptMultiConfig,
    OptSampleList,
    SampleList,
    add_prefix,
)
from torch import Tensor

__all__ = ['BTDNet']


@contextlib.contextmanager
def _eval_mode(module: nn.Module):
    """Runs ``module`` in eval mode (no dropout) and restores its mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@MODELS.register_module()
class BTDNet(EncoderDecoder):
    """BTDNet: Bidirectional feature extractor + TwinStream decoder + rephrase head.

    The sentence travels as a string in each data sample's metainfo (``text``, ``key_spans``).
    The segmentor tokenises it (:meth:`tokenize`: E and the key-phrase-masked E_m, with the text
    encoder's tokenizer) and hands the backbone tensors only, as mmseg backbones take them (so
    the tensor mode can be traced and exported to ONNX). E_m is tokenised only where something
    reads L_m: the background tokens with the prior (``use_prior_knowledge``), and the rephrase
    head in training.

    1. ``loss``: the decode head's forward is run once; its V*, L* also feed the rephrase head.

    .. code:: text

     loss(inputs, data_samples)
      ├─ tokenize(data_samples) -> input_ids, attention_mask, masked_input_ids, masked_...
      ├─ extract_feat(inputs, text=tokens) ─ backbone (BidirectionalFeatureExtractor, Eq. 1-4)
      │     -> feats: visual V'_1..4, text L'_4, text_mask, masked_text L_m, masked_mask,
      │        input_ids, attention_mask
      ├─ _decode_head_forward_train(feats, data_samples, inputs)
      │     decode_head.forward(feats) (TwinStreamHead, Eq. 5-9)
      │        -> seg_logits [O_bg, O_fg], visual_star V*, text_star L*, text_mask
      │     decode_head.loss_by_feat(...) -> decode.loss_ce (Eq. 10-11), decode.acc_seg
      └─ _rephrase_head_forward_train(feats, decode_outputs)   (skipped when rephrase_head=None)
            L_0 = backbone.text_encoder(input_ids, attention_mask)  (no_grad, eval mode)
            rephrase_head.loss(dict(V*, L*, text_mask, L_m, L_0, attention_mask))
               -> aux.loss_re = eta * MSE(L_re, L_0)  (Eq. 12-14)

    2. ``predict``: mmseg's inference, then the no-target decision (below); no rephrase head.
       The sentences are tokenised once per batch, not once per slide crop; in slide mode L_m
       (E_m through BERT, which does not depend on the image) is also encoded once for all
       crops.

    .. code:: text

     predict(inputs, data_samples)
      ├─ inference(): tokenize(metas) once [slide: L_m once]
      │  └─ whole_inference() / slide_inference()   (test_cfg.mode)
      │     encode_decode(img or crop, batch_img_metas)
      │        backbone(img, **tokens) -> decode_head.forward(need_visual_star=False)
      │        (the head's lean forward: the last MCI round queries the stage-2 tokens only)
      │        -> decode_head.predict_by_feat() -> (B, 2, h, w) logits
      │        [-> refiner(img, logits), when the config has one]
      │        [no_target_head(L*, V*) -> (B, 2) logits, kept for the decision]
      ├─ postprocess_result(): crop padding, resize to ori_shape, argmax
      │     -> pred_sem_seg (1, H0, W0) 0/1 (1 where O_fg > O_bg), seg_logits (2, H0, W0)
      └─ _decide_no_target(): pred_no_target, no_target_prob; "no target" empties pred_sem_seg

    3. ``_forward`` (tensor mode): backbone() -> decode_head.forward(need_visual_star=False)
       ['seg_logits'], (B, 2, H/4, W/4) (with a refiner: refined, (B, 2, H, W)). It takes the
       token tensors instead of data samples (``text=``), which is what the ONNX export traces.

    A refiner (``refiner=dict(type='ImageGuidedRefiner')``, not in the paper) corrects the head's
    H/4 logits at the input's resolution from the image's pixels; the head's loss is then taken
    on the refined logits (``decode.*``) and, weighted, on its own (``coarse.*``).

    Every prediction says whether the sentence names anything in the image (generalized
    referring; not in the paper): ``pred_no_target`` and ``no_target_prob`` in its metainfo, and
    an empty ``pred_sem_seg`` when it names nothing. With a no-target head
    (``no_target_head=dict(type='NoTargetHead')``, trained on ``no_target`` samples: loss
    ``no_target.loss_nt``) the head decides, from the last MCI round's L* and V*; without one
    (the paper) the mask decides: no target where O_fg never beats O_bg, with
    ``no_target_prob = sigmoid(-max(O_fg - O_bg))`` (0.5 exactly at the mask's own rule).

    Args:
        backbone (dict): ``BidirectionalFeatureExtractor`` config (Swin + BERT + BSC). It must
            have a ``text_encoder`` attribute when a rephrase head is used (for L_0).
        decode_head (dict): ``TwinStreamHead`` config.
        rephrase_head (dict, optional): ``RephraseHead`` config; None for "without L_re".
        refiner (dict, optional): ``ImageGuidedRefiner`` config; None (the paper) for none.
        no_target_head (dict, optional): ``NoTargetHead`` config, for generalized referring
            (sentences that may name nothing); None (the paper) decides "no target" from the
            mask alone.
        train_cfg (dict, optional): Training config.
        test_cfg (dict, optional): ``dict(mode='whole')`` or
            ``dict(mode='slide', crop_size=(h, w), stride=(h, w))``.
        data_preprocessor (dict, optional): ``SegDataPreProcessor`` config.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(
        self,
        backbone: ConfigType,
        decode_head: ConfigType,
        rephrase_head: OptConfigType = None,
        refiner: OptConfigType = None,
        no_target_head: OptConfigType = None,
        train_cfg: OptConfigType = None,
        test_cfg: OptConfigType = None,
        data_preprocessor: OptConfigType = None,
        init_cfg: OptMultiConfig = None,
    ) -> None:
        super().__init__(
            backbone=backbone,
            decode_head=decode_head,
            neck=None,
            auxiliary_head=None,
            train_cfg=train_cfg,
            test_cfg=ConfigDict(test_cfg if test_cfg is not None else dict(mode='whole')),
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
        )
        self.rephrase_head = MODELS.build(rephrase_head) if rephrase_head is not None else None
        self.refiner = MODELS.build(refiner) if refiner is not None else None
        self.no_target_head = MODELS.build(no_target_head) if no_target_head else None
        if not hasattr(self.backbone, 'text_encoder'):
            raise AttributeError(
                f'BTDNet: the backbone must have a text_encoder (its tokenizer reads the '
                f'sentences; L_0 of the rephrase head), but {type(self.backbone).__name__} has '
                'none.'
            )
        self._inference_text = None  # the batch's tokens while inference() runs
        self._no_target_logits = None  # the no-target head's logits of each encode_decode call

    @property
    def with_rephrase_head(self) -> bool:
        """Whether the model has the D-MOLS rephrase head."""
        return self.rephrase_head is not None

    @property
    def with_no_target_head(self) -> bool:
        """Whether a learnt head decides "no target" (else the mask alone does)."""
        return self.no_target_head is not None

    @property
    def with_refiner(self) -> bool:
        """Whether the head's logits are refined at full resolution (not in the paper)."""
        return self.refiner is not None

    def refine(self, inputs: Tensor, logits: Tensor) -> Tensor:
        """The refiner's logits at the size of ``inputs``; ``logits`` as they are without one."""
        if self.refiner is None:
            return logits
        return self.refiner(inputs, logits, align_corners=self.align_corners)

    # ------------------------------------------------------------------ text
    def _uses_masked_text(self, for_loss: bool) -> bool:
        """Whether L_m is read: by the background tokens (prior), or in training by D-MOLS."""
        prior = getattr(self.decode_head, 'use_prior_knowledge', True)
        return prior or (for_loss and self.with_rephrase_head)

    def tokenize(
        self,
        samples: SampleList | list[dict],
        with_masked: bool = True,
        device: torch.device | None = None,
    ) -> dict[str, Tensor]:
        """Token ids of the sentences E (and of the key-phrase-masked E_m) of a batch.

        Args:
            samples (list[SegDataSample] | list[dict]): Data samples, or their metainfo dicts
                (mmseg's inference passes those), with ``text`` (str) and optionally
                ``key_spans`` (character spans of the key phrase, for E_m).
            with_masked (bool): Also E_m (``masked_input_ids``, ``masked_attention_mask``).
            device (torch.device, optional): Of the outputs; default the model's.

        Returns:
            dict[str, Tensor]: ``input_ids``, ``attention_mask`` (and with ``with_masked``
            ``masked_input_ids``, ``masked_attention_mask``), each (B, N) long: the keyword
            arguments of the backbone's forward.
        """
        texts, spans = [], []
        for i, sample in enumerate(samples):
            meta = sample if isinstance(sample, dict) else sample.metainfo
            if 'text' not in meta:
                raise KeyError(
                    f'BTDNet: data sample {i} ({meta.get("img_path", "no img_path")}) has no '
                    "\"text\" in its metainfo; add 'text' to PackSegInputs' meta_keys."
                )
            texts.append(meta['text'])
            spans.append(list(meta.get('key_spans', []) or []))
        tokens = self.backbone.text_encoder.tokenize(texts, spans, device=device)
        if not with_masked:
            del tokens['masked_input_ids'], tokens['masked_attention_mask']
        return tokens

    def _batch_text(
        self, inputs: Tensor, samples: OptSampleList | list[dict], for_loss: bool
    ) -> dict[str, Tensor]:
        """The backbone's token tensors for the batch, after checking one sentence per image."""
        if samples is None or len(samples) != inputs.shape[0]:
            found = None if samples is None else len(samples)
            raise ValueError(
                f'BTDNet: one data sample with the sentence (metainfo "text") is needed per image; '
                f'{inputs.shape[0]} images, {found} data samples.'
            )
        return self.tokenize(samples, self._uses_masked_text(for_loss), device=inputs.device)

    # ------------------------------------------------------------------ features
    def extract_feat(
        self,
        inputs: Tensor,
        data_samples: OptSampleList = None,
        text: dict[str, Tensor] | None = None,
    ) -> dict:
        """Runs the bidirectional feature extractor.

        Args:
            inputs (Tensor): (B, 3, H, W) normalised images.
            data_samples (list[SegDataSample], optional): With ``text`` and ``key_spans`` in the
                metainfo; tokenised here (E_m included) unless ``text`` is given.
            text (dict[str, Tensor], optional): The tokens, as :meth:`tokenize` returns them.

        Returns:
            dict: The backbone's outputs (see :meth:`loss`).
        """
        if text is None:
            text = self._batch_text(inputs, data_samples, for_loss=True)
        return self.backbone(inputs, **text)

    def inference(self, inputs: Tensor, batch_img_metas: list[dict]) -> Tensor:
        """mmseg's whole / slide inference, with the sentences tokenised once for all crops.

        In slide mode, L_m (which does not depend on the image) is also encoded once; every
        crop then runs E through the BERT stages with its BSCs (L'_i depends on the crop).
        """
        text = self._batch_text(inputs, batch_img_metas, for_loss=False)
        if self.test_cfg.get('mode', 'whole') == 'slide' and 'masked_input_ids' in text:
            text['masked_text'] = self.backbone.text_encoder(
                text.pop('masked_input_ids'), text['masked_attention_mask']
            )
        self._inference_text = text
        try:
            return super().inference(inputs, batch_img_metas)
        finally:
            self._inference_text = None

    def encode_decode(self, inputs: Tensor, batch_img_metas: list[dict]) -> Tensor:
        """Logits (B, 2, h, w) at the size of ``inputs`` (an image or a slide crop).

        mmseg's inference passes metainfo dicts, not data samples; the sentences are in them
        (tokenised once per batch by :meth:`inference`).
        """
        text = self._inference_text
        if text is None:
            text = self._batch_text(inputs, batch_img_metas, for_loss=False)
        feats = self.backbone(inputs, **text)
        outputs = self.decode_head.forward(feats, need_visual_star=False)
        if self._no_target_logits is not None:
            self._no_target_logits.append(self.no_target_head(outputs))
        return self.refine(inputs, self.decode_head.predict_by_feat(outputs, batch_img_metas))

    # ------------------------------------------------------------------ training
    def _decode_head_forward_train(
        self, feats: dict, data_samples: SampleList, inputs: Tensor
    ) -> tuple[dict, dict]:
        """TwinStream forward and Eq. 10-11; also returns the forward's outputs (V*, L*).

        With a refiner, Eq. 11 is applied to the refined logits (``decode.*``), and, weighted by
        the refiner's ``coarse_loss_weight``, to the head's own (``coarse.*``); ``inputs`` are the
        images the refiner reads.
        """
        outputs = self.decode_head(feats)
        if not self.with_refiner:
            losses = self.decode_head.loss_by_feat(outputs, data_samples)
            return add_prefix(losses, 'decode'), outputs
        refined = self.refine(inputs, outputs['seg_logits'])
        losses = add_prefix(self.decode_head.loss_by_feat(refined, data_samples), 'decode')
        weight = self.refiner.coarse_loss_weight
        if weight > 0:
            coarse = self.decode_head.loss_by_feat(outputs, data_samples)
            coarse = {k: v * weight if 'loss' in k else v for k, v in coarse.items()}
            losses.update(add_prefix(coarse, 'coarse'))
        return losses, outputs

    def _rephrase_head_forward_train(
        self, feats: dict, decode_outputs: dict, data_samples: SampleList
    ) -> dict:
        """D-MOLS: L_0 from the text encoder (no gradient, no dropout), then Eq. 12-14."""
        missing = [k for k in ('input_ids', 'attention_mask', 'masked_text') if k not in feats]
        if missing:
            raise KeyError(
                f'BTDNet: the rephrase head needs {missing} from the backbone output; '
                f'found {sorted(feats)}.'
            )
        text_encoder = self.backbone.text_encoder
        with torch.no_grad(), _eval_mode(text_encoder):
            target = text_encoder(feats['input_ids'], feats['attention_mask'])
        inputs = dict(
            visual_star=decode_outputs['visual_star'],
            text_star=decode_outputs['text_star'],
            text_mask=decode_outputs['text_mask'],
            masked_text=feats['masked_text'],
            target=target,
            target_mask=feats['attention_mask'],
        )
        return add_prefix(self.rephrase_head.loss(inputs, data_samples, self.train_cfg), 'aux')

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        """Losses of Eq. 14: ``decode.loss_ce`` (Eq. 11) and ``aux.loss_re`` (eta * Eq. 13).

        Args:
            inputs (Tensor): (B, 3, H, W).
            data_samples (list[SegDataSample]): With ``gt_sem_seg`` and the sentence metainfo.

        Returns:
            dict[str, Tensor]: Loss components (and ``decode.acc_seg``).
        """
        feats = self.extract_feat(inputs, text=self._batch_text(inputs, data_samples, True))
        losses, decode_outputs = self._decode_head_forward_train(feats, data_samples, inputs)
        if self.with_no_target_head:
            nt_losses = self.no_target_head.loss(decode_outputs, data_samples)
            losses.update(add_prefix(nt_losses, 'no_target'))
        if self.with_rephrase_head:
            losses.update(self._rephrase_head_forward_train(feats, decode_outputs, data_samples))
        return losses

    # ------------------------------------------------------------------ inference
    def predict(self, inputs: Tensor, data_samples: OptSampleList = None) -> SampleList:
        """Masks at each sample's ``ori_shape``: ``pred_sem_seg`` (1, H0, W0), 1 where the target
        logit beats the background logit, and ``seg_logits`` (2, H0, W0) = [O_bg, O_fg].

        Args:
            inputs (Tensor): (B, 3, H, W).
            data_samples (list[SegDataSample]): Required: they carry the sentences.
        """
        if data_samples is None:
            raise ValueError(
                'BTDNet.predict: data samples with the sentence (metainfo "text") are required.'
            )
        self._no_target_logits = [] if self.with_no_target_head else None
        try:
            samples = super().predict(inputs, data_samples)
            crop_logits = self._no_target_logits
        finally:
            self._no_target_logits = None
        return self._decide_no_target(samples, crop_logits)

    def _decide_no_target(self, samples: SampleList, crop_logits: list | None) -> SampleList:
        """Sets ``pred_no_target`` / ``no_target_prob`` and empties the masks of "no target".

        ``crop_logits``: the head's (B, 2) logits of each encode_decode call (one in whole mode,
        one per window position in slide mode, where the image names something if any window
        does), or None without a head (the mask decides).
        """
        if crop_logits:
            probs = torch.stack([self.no_target_head.no_target_prob(x) for x in crop_logits])
            probs = probs.amin(0).tolist()
        for i, sample in enumerate(samples):
            if crop_logits:
                prob = probs[i]
                no_target = prob >= self.no_target_head.threshold
            else:
                logits = sample.seg_logits.data
                margin = float((logits[1] - logits[0]).max())
                prob, no_target = float(torch.sigmoid(torch.tensor(-margin))), margin <= 0
            if no_target:
                sample.pred_sem_seg.data.zero_()
            sample.set_metainfo(dict(pred_no_target=bool(no_target), no_target_prob=float(prob)))
        return samples

    def _forward(
        self,
        inputs: Tensor,
        data_samples: OptSampleList = None,
        text: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """Tensor mode: the logits [O_bg, O_fg] without post-processing.

        Args:
            inputs (Tensor): (B, 3, H, W) normalised images.
            data_samples (list[SegDataSample], optional): With the sentences; not read when
                ``text`` is given.
            text (dict[str, Tensor], optional): Token tensors as :meth:`tokenize` returns them
                (``input_ids``, ``attention_mask``, and with the prior ``masked_input_ids``,
                ``masked_attention_mask``), each (B, N). This is the form an ONNX export traces.

        Returns:
            Tensor: (B, 2, H/4, W/4), or (B, 2, H, W) with a refiner.
        """
        if text is None:
            text = self._batch_text(inputs, data_samples, for_loss=False)
        feats = self.backbone(inputs, **text)
        logits = self.decode_head.forward(feats, need_visual_star=False)['seg_logits']
        return self.refine(inputs, logits)
