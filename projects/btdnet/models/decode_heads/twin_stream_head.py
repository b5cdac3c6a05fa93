"""Target-Background TwinStream decoder (T-BTD), Eq. 5-11 of the paper (Sec. III-D).

* Eq. 5-7, Multi-scale Context Integration:
  :class:`btdnet.models.layers.MultiScaleContextIntegration`.
* Eq. 8, background tokens: L_m* = Concat({AP_r(L_m)}_r) + Delta; L_bg = mean(L_m*);
  L_fg = [CLS] of L*.
* Eq. 9, Fg-Bg predictor: O_fg / O_bg = <I_proj(V_pred), R_proj(L_fg / L_bg)> at H/4, with
  V_pred = up(V*_stage2) + phi(V'_1).
* Eq. 10-11, loss: :class:`FgBgCrossEntropyLoss`, lambda * L_fg + (1 - lambda) * L_bg.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, SampleList
from torch import Tensor

from ..layers.mci import MultiScaleContextIntegration, split_levels

__all__ = ['FgBgCrossEntropyLoss', 'TwinStreamHead']

#: Keys of the backbone's output that the head reads (the last two only with the prior).
REQUIRED_INPUTS = ('visual', 'text', 'text_mask', 'masked_text', 'masked_mask')


@MODELS.register_module()
class FgBgCrossEntropyLoss(nn.Module):
    """Target / background cross-entropy of Eq. 10-11.

    Per pixel, a 2-way softmax over (O_bg, O_fg) (channels 0 and 1 of the logits). L_fg is the
    cross-entropy averaged over the target pixels of the batch, L_bg averaged over the background
    pixels; pixels labelled ``ignore_index`` (padding) count in neither. A term without pixels is 0.
    Eq. 10 takes the log of O_fg and O_bg themselves and sums over pixels; the inner products of
    Eq. 9 are not probabilities, so one shared softmax turns the pair into probabilities, and the
    means keep each term's scale independent of the image size and of the target's area.

        loss = loss_weight * (lambda * L_fg + (1 - lambda) * L_bg)        (Eq. 11)

    With ``use_bg=False`` (the "without L_bg" ablation, Table VII) the loss is
    ``loss_weight * lambda * L_fg``.

    Args:
        fg_weight (float): lambda of Eq. 11, the weight of L_fg (0.6 by default). Sec. IV-B of the
            paper calls lambda = 0.6 the weight of L_bg instead; that reading is
            ``fg_weight=0.4`` (docs/paper_mapping.md).
        use_bg (bool): Whether the background term L_bg is used.
        loss_weight (float): Overall weight.
        loss_name (str): Key of the loss in the losses dict; must start with ``loss_``.
    """

    def __init__(
        self,
        fg_weight: float = 0.6,
        use_bg: bool = True,
        loss_weight: float = 1.0,
        loss_name: str = 'loss_ce',
    ) -> None:
        super().__init__()
        if not 0.0 <= fg_weight <= 1.0:
            raise ValueError(
                f'FgBgCrossEntropyLoss: fg_weight (lambda) must be in [0, 1], got {fg_weight}.'
            )
        if not loss_name.startswith('loss_'):
            raise ValueError(
                f'FgBgCrossEntropyLoss: loss_name must start with "loss_", got {loss_name!r}.'
            )
        self.fg_weight = fg_weight
        self.use_bg = use_bg
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        """Key of this loss in the losses dict (mmseg's loss convention)."""
        return self._loss_name

    def terms(
        self, seg_logits: Tensor, seg_label: Tensor, ignore_index: int = 255
    ) -> tuple[Tensor, Tensor]:
        """L_fg and L_bg of Eq. 10.

        Args:
            seg_logits (Tensor): (B, 2, H, W), channel 0 = O_bg, channel 1 = O_fg.
            seg_label (Tensor): (B, H, W) integer (uint8 or long) with 0 (background), 1 (target),
                ``ignore_index``.
            ignore_index (int): Label of pixels that count in neither term.

        Returns:
            tuple[Tensor, Tensor]: scalars L_fg, L_bg.
        """
        if seg_logits.dim() != 4 or seg_logits.shape[1] != 2:
            raise ValueError(
                f'FgBgCrossEntropyLoss: logits must be (B, 2, H, W), '
                f'found {tuple(seg_logits.shape)}.'
            )
        if seg_label.shape != (seg_logits.shape[0], *seg_logits.shape[2:]):
            raise ValueError(
                f'FgBgCrossEntropyLoss: label must be (B, H, W) = '
                f'{(seg_logits.shape[0], *seg_logits.shape[2:])}, found {tuple(seg_label.shape)}.'
            )
        log_prob = F.log_softmax(seg_logits.float(), dim=1)
        fg = (seg_label == 1) & (seg_label != ignore_index)
        bg = (seg_label == 0) & (seg_label != ignore_index)
        loss_fg = -(log_prob[:, 1] * fg).sum() / fg.sum().clamp(min=1)
        loss_bg = -(log_prob[:, 0] * bg).sum() / bg.sum().clamp(min=1)
        return loss_fg, loss_bg

    def forward(
        self,
        seg_logits: Tensor,
        seg_label: Tensor,
        weight: Tensor | None = None,
        ignore_index: int = 255,
        **kwargs,
    ) -> Tensor:
        """Eq. 11. ``weight`` (mmseg's pixel sampler) is not supported and must be None."""
        if weight is not None:
            raise ValueError(
                'FgBgCrossEntropyLoss: per-pixel weights (a pixel sampler) are not supported.'
            )
        loss_fg, loss_bg = self.terms(seg_logits, seg_label, ignore_index)
        loss = self.fg_weight * loss_fg
        if self.use_bg:
            loss = loss + (1.0 - self.fg_weight) * loss_bg
        return self.loss_weight * loss


@MODELS.register_module()
class TwinStreamHead(BaseDecodeHead):
    """Target-Background TwinStream decoder (T-BTD), Eq. 5-11.

    Reads the backbone's output dict (``BidirectionalFeatureExtractor``): V'_1..4, L'_4 with its
    mask, and L_m (the masked sentence through BERT) with its mask.

    * MCI x T (Eq. 5-7) gives V* (B, S, C) over the stage 2-4 tokens and L* (B, N, C).
    * V_pred = up(V*_stage2) + phi(V'_1) at H/4 (Eq. 8, first sentence of Sec. III-D-2).
    * L_fg = L*[:, 0] ([CLS]). L_m* = Concat(AP_r(proj(L_m)) for r in ``bg_pool_sizes``) + Delta,
      B = sum(bg_pool_sizes) tokens; L_bg = mean over the B tokens (Eq. 8). AP_r is an adaptive
      average pool over the sentence's own tokens (its length from the unmasked text's mask),
      skipping the [PAD] tokens of L_m (the masked key phrase among them); an empty bin pools to 0.
      With ``use_prior_knowledge=False`` (Table VI, "without") L_m* = Delta and L_m is not read.
    * O_fg, O_bg = <I_proj(V_pred), R_proj(L_fg / L_bg)> / sqrt(C) (Eq. 9), at H/4; the loss and
      predict resize them to the label / input size. Logit channel 0 is O_bg, channel 1 is O_fg.

    Departures from the paper: phi(V'_1) is a 1x1 conv C_1 -> C (the paper adds V'_1 itself, whose
    width differs from V*'s); the inner product of Eq. 9 is divided by sqrt(C), as attention logits
    are, so its scale does not grow with the width.

    ``forward`` returns a dict, so ``loss_by_feat`` / ``predict_by_feat`` are overridden; it also
    returns V* and L* (``visual_star``, ``text_star``) for the rephrase head (D-MOLS).

    Args:
        in_channels (Sequence[int]): Channels of V'_1..V'_4 (Swin-B: 128, 256, 512, 1024).
        channels (int): MCI width C (256; 768 for the comparison config).
        text_channels (int): Width D of the text features (BERT-base: 768).
        num_rounds (int): T, rounds of MCI.
        num_heads (int): Attention heads in MCI.
        num_points (int): Sampling points of MSAttn.
        ffn_ratio (int): FFN expansion in MCI.
        attn_dropout (float): Dropout inside MCI.
        bg_pool_sizes (Sequence[int]): Adaptive pooling sizes r; B = sum (5 for (1, 4)).
        use_prior_knowledge (bool): Whether L_m feeds the background tokens.
        norm_cfg (dict): Norm of I_proj's first conv.
        loss_decode (dict): The loss, by default :class:`FgBgCrossEntropyLoss` with lambda = 0.6.
        align_corners (bool): Of every bilinear resize.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(
        self,
        in_channels: tuple[int, ...] = (128, 256, 512, 1024),
        channels: int = 256,
        text_channels: int = 768,
        num_rounds: int = 3,
        num_heads: int = 8,
        num_points: int = 4,
        ffn_ratio: int = 4,
        attn_dropout: float = 0.0,
        bg_pool_sizes: tuple[int, ...] = (1, 4),
        use_prior_knowledge: bool = True,
        norm_cfg: OptConfigType = None,
        act_cfg: ConfigType = None,
        loss_decode: ConfigType = None,
        align_corners: bool = False,
        init_cfg: OptConfigType = None,
        **kwargs,
    ) -> None:
        in_channels = tuple(in_channels)
        if len(in_channels) != 4:
            raise ValueError(
                f"TwinStreamHead: in_channels must list the channels of V'_1..V'_4 (4 stages), "
                f'found {in_channels}.'
            )
        bg_pool_sizes = tuple(int(r) for r in bg_pool_sizes)
        if not bg_pool_sizes or min(bg_pool_sizes) < 1:
            raise ValueError(
                f'TwinStreamHead: bg_pool_sizes must be positive sizes, found {bg_pool_sizes}.'
            )
        if norm_cfg is None:
            norm_cfg = dict(type='GN', num_groups=min(32, channels // 4), requires_grad=True)
        if act_cfg is None:
            act_cfg = dict(type='ReLU')
        if loss_decode is None:
            loss_decode = dict(type='FgBgCrossEntropyLoss', fg_weight=0.6, use_bg=True)
        with warnings.catch_warnings():
            # mmseg's BaseDecodeHead builds the loss through its own deprecated build_loss.
            warnings.filterwarnings(
                'ignore', message='``build_loss`` would be deprecated soon', category=UserWarning
            )
            super().__init__(
                in_channels=list(in_channels),
                channels=channels,
                num_classes=2,
                out_channels=2,
                in_index=[0, 1, 2, 3],
                input_transform='multiple_select',
                dropout_ratio=0.0,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg,
                loss_decode=loss_decode,
                align_corners=align_corners,
                init_cfg=init_cfg,
                **kwargs,
            )
        del self.conv_seg  # the two logits come from Eq. 9, not from a classifier conv
        self.text_channels = text_channels
        self.bg_pool_sizes = bg_pool_sizes
        self.num_bg_tokens = sum(bg_pool_sizes)
        self.use_prior_knowledge = use_prior_knowledge

        self.mci = MultiScaleContextIntegration(
            in_channels=in_channels[1:],
            text_channels=text_channels,
            embed_dims=channels,
            num_rounds=num_rounds,
            num_heads=num_heads,
            num_points=num_points,
            ffn_ratio=ffn_ratio,
            dropout=attn_dropout,
        )
        self.stage1_proj = nn.Conv2d(in_channels[0], channels, 1)  # phi(V'_1)
        if use_prior_knowledge:
            self.masked_text_proj = nn.Linear(text_channels, channels)  # embedding of L_m
        self.bg_delta = nn.Parameter(torch.zeros(self.num_bg_tokens, channels))  # Delta of Eq. 8
        nn.init.trunc_normal_(self.bg_delta, std=0.02)
        self.image_proj = nn.Sequential(  # I_proj of Eq. 9
            ConvModule(channels, channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg),
            nn.Conv2d(channels, channels, 1),
        )
        self.text_proj = nn.Linear(channels, channels)  # R_proj of Eq. 9, shared by fg and bg

    # ------------------------------------------------------------------ Eq. 8
    def pool_masked_text(self, masked_text: Tensor, masked_mask: Tensor, lengths: Tensor) -> Tensor:
        """Adaptive average pools of L_m over its tokens, concatenated: the AP_r of Eq. 8.

        For a size r, bin j covers tokens [floor(j L / r), ceil((j + 1) L / r)) of a sentence of L
        tokens (adaptive pooling's bins); tokens whose ``masked_mask`` is 0 are left out of the
        mean.

        Args:
            masked_text (Tensor): L_m projected to C, (B, N, C).
            masked_mask (Tensor): (B, N), 1 for tokens kept in the masked sentence.
            lengths (Tensor): (B,) long, tokens of the unmasked sentence ([CLS] and [SEP] included).

        Returns:
            Tensor: (B, B_tok, C), B_tok = sum of ``bg_pool_sizes``.
        """
        num_tokens = masked_text.shape[1]
        positions = torch.arange(num_tokens, device=masked_text.device)
        lengths = lengths.clamp(min=1)[:, None]  # (B, 1)
        weights = []
        for r in self.bg_pool_sizes:
            j = torch.arange(r, device=masked_text.device)[None]  # (1, r)
            start = (j * lengths) // r
            end = ((j + 1) * lengths + r - 1) // r
            in_bin = (positions >= start[..., None]) & (positions < end[..., None])  # (B, r, N)
            weights.append(in_bin)
        weights = torch.cat(weights, 1).to(masked_text.dtype) * masked_mask[:, None, :].to(
            masked_text.dtype
        )
        weights = weights / weights.sum(-1, keepdim=True).clamp(min=1.0)
        return weights @ masked_text

    def background_tokens(self, inputs: dict) -> Tensor:
        """L_m* of Eq. 8, (B, B_tok, C)."""
        text = inputs['text']
        delta = self.bg_delta.to(text.dtype)[None]
        if not self.use_prior_knowledge:
            return delta.expand(text.shape[0], -1, -1)
        lengths = inputs['text_mask'].sum(1).long()
        masked = self.masked_text_proj(inputs['masked_text'])
        return self.pool_masked_text(masked, inputs['masked_mask'], lengths) + delta

    # ------------------------------------------------------------------ Eq. 9
    def match(self, v_pred: Tensor, prototypes: Tensor) -> Tensor:
        """O_k = <I_proj(V_pred), R_proj(L_k)> / sqrt(C) for k = bg, fg (Eq. 9).

        I_proj is conv-norm-act followed by a 1x1 conv (W, b). That last conv is linear, so it is
        applied to the two prototypes instead of to every pixel: <W x + b, r> = <x, W^T r> + <b, r>
        (the same logits, without a C x C conv at H/4).

        Args:
            v_pred (Tensor): V_pred, (B, C, H/4, W/4).
            prototypes (Tensor): R_proj([L_bg, L_fg]), (B, 2, C).

        Returns:
            Tensor: (B, 2, H/4, W/4), [O_bg, O_fg].
        """
        hidden = self.image_proj[0](v_pred)
        last = self.image_proj[1]
        weight = last.weight.flatten(1)  # (C_out, C_in)
        folded = prototypes @ weight  # W^T r, (B, 2, C_in)
        bias = prototypes @ last.bias  # <b, r>, (B, 2)
        logits = torch.einsum('bchw,bkc->bkhw', hidden, folded) + bias[..., None, None]
        return logits / self.channels**0.5

    # ------------------------------------------------------------------ forward
    def _check_inputs(self, inputs: dict) -> None:
        if not isinstance(inputs, dict):
            raise TypeError(
                f'TwinStreamHead: expected the backbone output dict with keys {REQUIRED_INPUTS}, '
                f'found {type(inputs).__name__}.'
            )
        required = REQUIRED_INPUTS if self.use_prior_knowledge else REQUIRED_INPUTS[:3]
        missing = [k for k in required if k not in inputs]
        if missing:
            raise KeyError(
                f'TwinStreamHead: backbone output lacks {missing}; it has {sorted(inputs)}.'
            )
        if inputs['text'].shape[-1] != self.text_channels:
            raise ValueError(
                f'TwinStreamHead: text features must have text_channels={self.text_channels}, '
                f'found {inputs["text"].shape[-1]}.'
            )

    def forward(self, inputs: dict, need_visual_star: bool = True) -> dict:
        """T-BTD forward.

        Args:
            inputs (dict): The backbone's output: ``visual`` [V'_1..V'_4] each
                (B, C_i, H/2^(i+1), W/2^(i+1)); ``text`` L'_4 (B, N, D); ``text_mask`` (B, N);
                with the prior also ``masked_text`` L_m (B, N, D) and ``masked_mask`` (B, N).
            need_visual_star (bool): Whether all of V* is wanted (the rephrase head reads it in
                training). False when only the logits are (``predict``, tensor mode): the last
                MCI round then computes V* only for the stage-2 tokens the Fg-Bg predictor
                reads (same logits, about a quarter less MSAttn). Default True.

        Returns:
            dict: ``seg_logits`` (B, 2, H/4, W/4) [O_bg, O_fg]; ``pixel_features`` V_pred
            (B, C, H/4, W/4), what Eq. 9 matches; ``visual_star`` V* (B, S, C),
            only its stage-2 tokens without ``need_visual_star``; ``text_star`` L* (B, N, C);
            ``text_mask`` (B, N); ``spatial_shapes`` of V*'s levels.
        """
        self._check_inputs(inputs)
        visual = self._transform_inputs(inputs['visual'])
        text_mask = inputs['text_mask']
        mci = self.mci(
            list(visual[1:]), inputs['text'], text_mask, first_level_only=not need_visual_star
        )
        visual_star, text_star = mci['visual'], mci['text']
        shapes = mci['spatial_shapes']
        stage2 = split_levels(visual_star[:, : shapes[0][0] * shapes[0][1]], shapes[:1])[0]
        stage1 = self.stage1_proj(visual[0])
        v_pred = stage1 + resize(
            stage2, size=stage1.shape[2:], mode='bilinear', align_corners=self.align_corners
        )

        l_fg = text_star[:, 0]  # [CLS] of L*
        l_bg = self.background_tokens(inputs).mean(1)
        prototypes = self.text_proj(torch.stack((l_bg, l_fg), 1))  # R_proj, (B, 2, C): bg, fg
        seg_logits = self.match(v_pred, prototypes)
        return dict(
            seg_logits=seg_logits,
            pixel_features=v_pred,
            visual_star=visual_star,
            text_star=text_star,
            text_mask=text_mask,
            spatial_shapes=mci['spatial_shapes'],
        )

    # ------------------------------------------------------------------ loss / predict
    def loss_by_feat(self, seg_logits: dict | Tensor, batch_data_samples: SampleList) -> dict:
        """Eq. 10-11 against ``gt_sem_seg`` (0 / 1, 255 = padding).

        Args:
            seg_logits (dict | Tensor): ``forward``'s output, or its (B, 2, h, w) logits.
            batch_data_samples (list[SegDataSample]): With ``gt_sem_seg`` (1, H, W).

        Returns:
            dict: the loss (``loss_ce`` by default) and ``acc_seg``.
        """
        if isinstance(seg_logits, dict):
            seg_logits = seg_logits['seg_logits']
        return super().loss_by_feat(seg_logits, batch_data_samples)

    def predict(self, inputs: dict, batch_img_metas: list[dict], test_cfg: ConfigType) -> Tensor:
        """Logits (B, 2, H, W) at the input (or crop) size, from the lean forward.

        As mmseg's ``BaseDecodeHead.predict``, with ``forward(inputs, need_visual_star=False)``.
        """
        return self.predict_by_feat(self.forward(inputs, need_visual_star=False), batch_img_metas)

    def predict_by_feat(self, seg_logits: dict | Tensor, batch_img_metas: list[dict]) -> Tensor:
        """Resizes [O_bg, O_fg] to the input (or, in slide inference, the crop) size.

        Returns:
            Tensor: (B, 2, H, W) logits; channel 1 beats channel 0 where the pixel is the target.
        """
        if isinstance(seg_logits, dict):
            seg_logits = seg_logits['seg_logits']
        return super().predict_by_feat(seg_logits, batch_img_metas)
