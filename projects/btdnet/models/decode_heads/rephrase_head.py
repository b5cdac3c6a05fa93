"""Rephrase head of the Dual-Modal Object Learning Strategy (D-MOLS), Eq. 12-14 (Sec. III-E).

    L_re  = CrossAtt(L_m, CrossAtt(V*, L*))                             (Eq. 12)
    loss  = 1/N sum_i || L_re^(i) - sg(L_0)^(i) ||^2                    (Eq. 13)
    total = L_ce + eta * loss                                           (Eq. 14)

The head is auxiliary: it only exists in training (the segmentor skips it in predict / tensor
mode). It reads V*, L* from the TwinStream head's forward and L_m, L_0 from the backbone's text
encoder; :class:`btdnet.models.segmentors.BTDNet` hands them over (see its docstring).
"""

from __future__ import annotations

import torch.nn as nn
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, SampleList
from torch import Tensor

from ..layers.mci import CrossAttention

__all__ = ['RephraseHead']

#: Keys the segmentor passes to the rephrase head.
REQUIRED_INPUTS = ('visual_star', 'text_star', 'text_mask', 'masked_text', 'target', 'target_mask')


@MODELS.register_module()
class RephraseHead(BaseDecodeHead):
    """Joint Reconstruction (rephrase) module of D-MOLS, Eq. 12-13, as an auxiliary head.

    A two-step transformer decoder at the MCI width C: first every token of V* queries L*
    (the padding of L* masked out), giving text-enriched visual tokens; then L_m, projected from
    the BERT width D to C, queries those tokens; an FFN and a projection back to D give L_re,
    which regresses the stop-gradient BERT output L_0 of the unmasked sentence. Each attention / FFN
    block has a residual and a LayerNorm after it.

    Departures from the paper: the residuals, LayerNorms and FFN of a transformer decoder layer
    (the paper names a transformer decoder but writes only the two attentions), and the
    projections of L_m (D -> C) and of the output (C -> D) that let the decoder run at the MCI
    width and compare with L_0 at BERT's. The squared error is averaged over the real tokens of
    the sentence and over the D channels (``F.mse_loss``-style); Eq. 13's sum over channels would
    be D times larger, so eta acts as eta / D on Eq. 13 as written.

    Args:
        in_channels (int): MCI width C of V* and L*.
        channels (int): Width of the reconstruction decoder (usually C).
        text_channels (int): BERT width D of L_m and L_0.
        num_heads (int): Attention heads.
        ffn_ratio (int): FFN expansion.
        attn_dropout (float): Attention / FFN dropout.
        loss_weight (float): eta of Eq. 14 (0.1 by default).
        loss_name (str): Key of the loss; must start with ``loss_``.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(
        self,
        in_channels: int = 256,
        channels: int = 256,
        text_channels: int = 768,
        num_heads: int = 8,
        ffn_ratio: int = 4,
        attn_dropout: float = 0.0,
        loss_weight: float = 0.1,
        loss_name: str = 'loss_re',
        init_cfg: OptConfigType = None,
        **kwargs,
    ) -> None:
        if not loss_name.startswith('loss_'):
            raise ValueError(f'RephraseHead: loss_name must start with "loss_", got {loss_name!r}.')
        super().__init__(
            in_channels=in_channels,
            channels=channels,
            num_classes=2,
            out_channels=2,
            dropout_ratio=0.0,
            loss_decode=[],  # the loss is Eq. 13, computed in loss_by_feat
            init_cfg=init_cfg,
            **kwargs,
        )
        del self.conv_seg  # no segmentation output
        self.text_channels = text_channels
        self.loss_weight = loss_weight
        self.loss_name = loss_name
        self.visual_in = (
            nn.Linear(in_channels, channels) if in_channels != channels else nn.Identity()
        )
        self.text_in = (
            nn.Linear(in_channels, channels) if in_channels != channels else nn.Identity()
        )
        # CrossAtt(V*, L*): the visual tokens gather the sentence.
        self.enrich_attn = CrossAttention(channels, num_heads, dropout=attn_dropout)
        self.enrich_norm = nn.LayerNorm(channels)
        # CrossAtt(L_m, .): the masked sentence reads the enriched tokens.
        self.masked_in = nn.Linear(text_channels, channels)
        self.rephrase_attn = CrossAttention(channels, num_heads, dropout=attn_dropout)
        self.rephrase_norm1 = nn.LayerNorm(channels)
        self.ffn = nn.Sequential(
            nn.Linear(channels, channels * ffn_ratio),
            nn.GELU(),
            nn.Dropout(attn_dropout),
            nn.Linear(channels * ffn_ratio, channels),
        )
        self.rephrase_norm2 = nn.LayerNorm(channels)
        self.out_proj = nn.Linear(channels, text_channels)

    def forward(self, inputs: dict) -> Tensor:
        """Eq. 12.

        Args:
            inputs (dict): ``visual_star`` V* (B, S, C); ``text_star`` L* (B, N, C);
                ``text_mask`` (B, N) of L*; ``masked_text`` L_m (B, N, D).

        Returns:
            Tensor: L_re, (B, N, D).
        """
        if not isinstance(inputs, dict):
            raise TypeError(
                f'RephraseHead: expected a dict with keys {REQUIRED_INPUTS[:4]}, '
                f'found {type(inputs).__name__}.'
            )
        missing = [k for k in REQUIRED_INPUTS[:4] if k not in inputs]
        if missing:
            raise KeyError(f'RephraseHead: inputs lack {missing}; found {sorted(inputs)}.')
        visual = self.visual_in(inputs['visual_star'])
        text = self.text_in(inputs['text_star'])
        enriched = self.enrich_norm(visual + self.enrich_attn(visual, text, inputs['text_mask']))
        query = self.masked_in(inputs['masked_text'])
        x = self.rephrase_norm1(query + self.rephrase_attn(query, enriched))
        x = self.rephrase_norm2(x + self.ffn(x))
        return self.out_proj(x)

    def loss(self, inputs: dict, batch_data_samples: SampleList, train_cfg: ConfigType) -> dict:
        """Eq. 12-13 plus eta.

        Args:
            inputs (dict): As :meth:`forward`, plus ``target`` L_0 (B, N, D), computed without
                gradient, and ``target_mask`` (B, N), 1 for the sentence's real tokens.
            batch_data_samples (list[SegDataSample]): Unused (the target is the sentence itself).
            train_cfg (dict): Unused.

        Returns:
            dict: ``{loss_name: eta * L_re}``.
        """
        missing = [k for k in REQUIRED_INPUTS[4:] if k not in inputs]
        if missing:
            raise KeyError(f'RephraseHead.loss: inputs lack {missing}; found {sorted(inputs)}.')
        rephrased = self.forward(inputs)
        return self.loss_by_feat(rephrased, inputs['target'], inputs['target_mask'])

    def loss_by_feat(self, rephrased: Tensor, target: Tensor, target_mask: Tensor) -> dict:  # type: ignore[override]
        """Eq. 13: squared error to sg(L_0) over the real tokens, times eta.

        Args:
            rephrased (Tensor): L_re, (B, N, D).
            target (Tensor): L_0, (B, N, D); detached here whatever the caller did.
            target_mask (Tensor): (B, N), 1 for real tokens.

        Returns:
            dict: ``{loss_name: loss}``.
        """
        if rephrased.shape != target.shape:
            raise ValueError(
                f'RephraseHead: L_re {tuple(rephrased.shape)} and L_0 {tuple(target.shape)} '
                'must have the same shape.'
            )
        mask = target_mask.to(rephrased.dtype)[..., None]
        sq_error = (rephrased - target.detach()).pow(2) * mask
        loss = sq_error.sum() / (mask.sum() * rephrased.shape[-1]).clamp(min=1.0)
        return {self.loss_name: self.loss_weight * loss}

    def predict(self, inputs, batch_img_metas, test_cfg):  # noqa: D102
        raise RuntimeError(
            'RephraseHead is an auxiliary training head (D-MOLS); it has no prediction.'
        )

    def predict_by_feat(self, seg_logits, batch_img_metas):  # noqa: D102
        raise RuntimeError(
            'RephraseHead is an auxiliary training head (D-MOLS); it has no prediction.'
        )
