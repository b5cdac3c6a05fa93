"""Bidirectional Spatial Correlation (BSC), Eq. 2-4 of the paper (Sec. III-C2)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor


class MaskedInstanceNorm1d(nn.Module):
    """InstanceNorm over the real tokens of each sentence, per channel.

    ``nn.InstanceNorm1d`` would let padding tokens shift the statistics; here they take no part,
    so appending padding never changes the output of real tokens.

    Args:
        num_features (int): Channels D.
        eps (float): Added to the variance. Default 1e-5.

    The learnable per-channel scale and shift (``weight``, ``bias``) are always on.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Normalise.

        Args:
            x (Tensor): (B, N, D) token features.
            mask (Tensor): (B, N), 1 / True for real tokens.

        Returns:
            Tensor: (B, N, D); padded positions hold finite values that callers should ignore.
        """
        m = mask.to(x.dtype).unsqueeze(-1)
        count = m.sum(dim=1, keepdim=True).clamp(min=1)
        mean = (x * m).sum(dim=1, keepdim=True) / count
        var = ((x - mean) ** 2 * m).sum(dim=1, keepdim=True) / count
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


@MODELS.register_module()
class BidirectionalSpatialCorrelation(BaseModule):
    """Bidirectional Spatial Correlation between a Swin stage and a BERT stage (Eq. 2-4).

    Vision to language (updates V, Eq. 2-4 with k in ``v2l_kernels``): every text token t
    generates a k x k x C filter ``Q_k L(t)``; the affinity of pixel p and token t is
    ``<Unfold_k(V)(p), Q_k L(t)> / sqrt(k^2 C)`` (Eq. 2-3), which is a convolution of V with the
    N text-generated filters. The kernels of all k are zero-padded to the largest k and summed
    with their weights alpha_k, so W_v2l costs one dynamic convolution and the k^2-fold unfolded
    map is never built. Softmax over the real tokens, then each pixel gathers the tokens
    (Eq. 4): ``V' = IN(Conv1x1(W_v2l L)) * V + V``. The 1x1 convolution (D -> C) is applied to
    the tokens before gathering; the softmax weights sum to one, so this equals applying it
    after. ``gate_v_norm`` (an ``nn.InstanceNorm2d``) holds the InstanceNorm's affine weights;
    its statistics are computed from the softmax weights (see :meth:`forward`), so on a
    one-pixel map the normalised gate is 0 instead of an error in training.

    Language to vision (updates L, Eq. 2-4 with k in ``l2v_kernels``): a window of k tokens,
    ``Unfold(L, k)``, is projected to C by a ``conv1d`` (D -> C, kernel k, zero 'same' padding;
    for even k the extra token is on the right: window [t, t + k - 1] for k = 2), and dotted
    with every pixel of V divided by sqrt(C). The keys of all k are summed with weights beta_k,
    softmax over pixels, each token gathers V (Eq. 3), and
    ``L' = IN(Conv1x1(W_l2v V^f)) * L + L`` with a 1x1 ``conv1d`` C -> D and an InstanceNorm over
    the real tokens (Eq. 4).

    Padding is respected: padded tokens take no weight in any softmax, are zeros inside the
    token windows, take no part in the InstanceNorm statistics, and come out unchanged.

    Departures from the paper (Eq. 3 multiplies W_v, H_iW_i x k^2 C_i, with L_i, D x N, whose
    sizes do not match): the learnable projections Q_k (text to k x k x C filters) and the conv1d
    (token windows to C) make the products defined; the affinities are divided by sqrt(k^2 C) and
    sqrt(C) and normalised by a softmax (over the real tokens for W_v2l, over the pixels for
    W_l2v), as attention logits are; alpha_k and beta_k start at 1 / (number of k); both
    InstanceNorms have learnable affine weights. Tests check the dynamic convolution against the
    literal Unfold + matrix product of Eq. 2-3.

    Args:
        visual_channels (int): Channels C_i of the Swin stage.
        text_channels (int): Width D of BERT.
        v2l_kernels (tuple[int]): Odd receptive fields k of the vision-to-language affinity.
            Default (1, 3, 5).
        l2v_kernels (tuple[int]): Token windows k of the language-to-vision affinity.
            Default (1, 2, 3).
        one_way (bool): Only vision to language ("only V2L" ablation): the text passes unchanged
            and no language-to-vision parameters are built. Default False.
        norm_eps (float): Epsilon of both InstanceNorms. Default 1e-5.
        init_cfg (dict, optional): mmengine init config. Default None.
    """

    def __init__(
        self,
        visual_channels: int,
        text_channels: int,
        v2l_kernels: tuple = (1, 3, 5),
        l2v_kernels: tuple = (1, 2, 3),
        one_way: bool = False,
        norm_eps: float = 1e-5,
        init_cfg=None,
    ):
        super().__init__(init_cfg=init_cfg)
        v2l_kernels = tuple(int(k) for k in v2l_kernels)
        l2v_kernels = tuple(int(k) for k in l2v_kernels)
        if not v2l_kernels or any(k < 1 or k % 2 == 0 for k in v2l_kernels):
            raise ValueError(
                f'BidirectionalSpatialCorrelation: v2l_kernels must be odd and >= 1 (centred '
                f'windows on the feature map); got {v2l_kernels}.'
            )
        if not one_way and (not l2v_kernels or any(k < 1 for k in l2v_kernels)):
            raise ValueError(
                f'BidirectionalSpatialCorrelation: l2v_kernels must be >= 1; got {l2v_kernels}.'
            )
        self.visual_channels = visual_channels
        self.text_channels = text_channels
        self.v2l_kernels = v2l_kernels
        self.one_way = one_way

        # vision -> language: text-generated filters Q_k, weights alpha_k, Gate_v
        self.v2l_filters = nn.ModuleList(
            nn.Linear(text_channels, k * k * visual_channels) for k in v2l_kernels
        )
        self.v2l_alpha = nn.Parameter(torch.full((len(v2l_kernels),), 1.0 / len(v2l_kernels)))
        self.gate_v_conv = nn.Linear(text_channels, visual_channels)  # 1x1 conv D -> C
        self.gate_v_norm = nn.InstanceNorm2d(visual_channels, eps=norm_eps, affine=True)

        # language -> vision: token-window projections, weights beta_k, Gate_l
        if one_way:
            self.l2v_kernels = ()
        else:
            self.l2v_kernels = l2v_kernels
            self.l2v_keys = nn.ModuleList(
                nn.Conv1d(text_channels, visual_channels, k) for k in l2v_kernels
            )
            self.l2v_beta = nn.Parameter(torch.full((len(l2v_kernels),), 1.0 / len(l2v_kernels)))
            self.gate_l_conv = nn.Conv1d(visual_channels, text_channels, 1)
            self.gate_l_norm = MaskedInstanceNorm1d(text_channels, eps=norm_eps)

    def _check_inputs(self, visual: Tensor, text: Tensor, text_mask: Tensor):
        if visual.dim() != 4 or visual.shape[1] != self.visual_channels:
            raise ValueError(
                f'BidirectionalSpatialCorrelation expects visual (B, {self.visual_channels}, H, '
                f'W); got {tuple(visual.shape)}.'
            )
        if text.dim() != 3 or text.shape[2] != self.text_channels:
            raise ValueError(
                f'BidirectionalSpatialCorrelation expects text (B, N, {self.text_channels}); got '
                f'{tuple(text.shape)}.'
            )
        if text_mask.shape != text.shape[:2] or visual.shape[0] != text.shape[0]:
            raise ValueError(
                f'BidirectionalSpatialCorrelation: batch/token sizes disagree: visual '
                f'{tuple(visual.shape)}, text {tuple(text.shape)}, text_mask '
                f'{tuple(text_mask.shape)}.'
            )

    def v2l_affinity(self, visual: Tensor, text: Tensor) -> Tensor:
        """Unnormalised W_v2l (Eq. 2-3) as one text-generated dynamic convolution.

        Args:
            visual (Tensor): (B, C, H, W).
            text (Tensor): (B, N, D).

        Returns:
            Tensor: (B, N, H, W) affinity of every pixel with every token (channels-last in
            memory when ``visual`` is, as the extractor passes it).
        """
        b, c, h, w = visual.shape
        n = text.shape[1]
        kmax = max(self.v2l_kernels)
        filters = 0
        for k, alpha, proj in zip(self.v2l_kernels, self.v2l_alpha, self.v2l_filters):
            f = proj(text).view(b, n, c, k, k) * (alpha / math.sqrt(k * k * c))
            pad = (kmax - k) // 2
            filters = filters + F.pad(f, (pad, pad, pad, pad))
        if torch.onnx.is_in_onnx_export():
            # ONNX's Conv takes the group count as a constant, which would fix the batch size of
            # the graph. The same correlation: every filter tap of every token dotted with every
            # pixel in one product (B, N k^2, HW), then the k^2 tap maps shifted into place and
            # summed (N channels each, not C). Equal to the grouped convolution (tested).
            half = kmax // 2
            taps = filters.permute(0, 1, 3, 4, 2).reshape(b, n * kmax * kmax, c)
            taps = (taps @ visual.reshape(b, c, h * w)).view(b, n, kmax, kmax, h, w)
            taps = F.pad(taps, (half, half, half, half))
            out = 0
            for i in range(kmax):
                for j in range(kmax):
                    # output pixel p takes tap (i, j) of pixel p + (i, j) - half
                    out = out + taps[:, :, i, j, i : i + h, j : j + w]
            return out
        # groups=B: sample b is convolved with its own N filters only. Filters in the memory
        # format of the input, else the convolution first converts the whole feature map. (A
        # channels-last input stays so only at B = 1, inference; for B > 1 the reshape into
        # one B*C-channel map copies it to the contiguous layout.)
        visual = visual.reshape(1, b * c, h, w)
        layout = (
            torch.channels_last
            if visual.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format
        )
        filters = filters.reshape(b * n, c, kmax, kmax).contiguous(memory_format=layout)
        out = F.conv2d(visual, filters, padding=kmax // 2, groups=b)
        return out.view(b, n, h, w)

    def l2v_keys_of(self, tokens: Tensor) -> Tensor:
        """Projected token windows summed over k with weights beta_k (Eq. 2-3), as one conv1d.

        Each ``conv1d`` with kernel k and 'same' padding is zero-padded to the largest kernel in
        the frame of its own window (``[t - (k - 1) // 2, t + k // 2]``), so the weighted sum of
        all k costs one convolution.

        Args:
            tokens (Tensor): (B, D, N), padding tokens zeroed.

        Returns:
            Tensor: (B, C, N) keys.
        """
        kmax = max(self.l2v_kernels)
        kmax_left = (kmax - 1) // 2
        weight, bias = 0, 0
        for k, beta, conv in zip(self.l2v_kernels, self.l2v_beta, self.l2v_keys):
            left = kmax_left - (k - 1) // 2
            weight = weight + beta * F.pad(conv.weight, (left, kmax - k - left))
            bias = bias + beta * conv.bias
        return F.conv1d(F.pad(tokens, (kmax_left, kmax - 1 - kmax_left)), weight, bias)

    def forward(self, visual: Tensor, text: Tensor, text_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Correlate one stage's visual and text features both ways (Eq. 2-4).

        The work is done on pixel tokens (B, HW, C), which is a view of ``visual`` when it is
        channels-last in memory (as the extractor passes Swin's tokens) and of the returned V'_i
        always: the Swin stage after it reads V'_i without a copy.

        Args:
            visual (Tensor): (B, C, H, W) V_i.
            text (Tensor): (B, N, D) L_i.
            text_mask (Tensor): (B, N), 1 / True for real tokens, 0 for padding.

        Returns:
            tuple[Tensor, Tensor]: V'_i (B, C, H, W), channels-last in memory, and L'_i
            (B, N, D); with ``one_way`` the second is ``text`` itself.
        """
        self._check_inputs(visual, text, text_mask)
        mask = text_mask.bool()
        b, c, h, w = visual.shape
        n = text.shape[1]
        pixels = visual.permute(0, 2, 3, 1).reshape(b, h * w, c)  # V_i as (B, HW, C)

        # vision -> language (Eq. 2-4, first lines)
        logits = self.v2l_affinity(visual, text).permute(0, 2, 3, 1).reshape(b, h * w, n)
        logits = logits.masked_fill(~mask[:, None, :], float('-inf'))
        weights = logits.softmax(dim=-1)  # (B, HW, N), rows sum to 1
        values = self.gate_v_conv(text)  # (B, N, C)
        # Gate_v = IN(weights @ values), the InstanceNorm (nn.InstanceNorm2d's statistics: per
        # channel over the pixels, biased variance) without building weights @ values first:
        # its mean over pixels is mean(weights) @ values and its variance values^T Cov values,
        # Cov the (N, N) covariance of the weight rows over the pixels. Then, as the rows sum
        # to 1, IN(g) * V + V = V * (weights @ (values * scale + shift + 1)): one (HW, N) x
        # (N, C) product and one product with V, instead of passes over (HW, C) for the
        # statistics, the normalisation and the residual.
        # In float32 even under autocast: Cov's rows sum to 0, so the variance is a sum of
        # cancelling terms that half precision could even turn negative, and the folded
        # values * scale terms (up to |values| / sqrt(eps)) cancel in the product, which could
        # overflow float16.
        norm = self.gate_v_norm
        stats_dtype = torch.promote_types(weights.dtype, torch.float32)
        with torch.autocast(weights.device.type, enabled=False):
            weights_s, values_s = weights.to(stats_dtype), values.to(stats_dtype)
            mean_w = weights_s.mean(dim=1, keepdim=True)  # (B, 1, N)
            centred = weights_s - mean_w
            cov = centred.transpose(1, 2) @ centred / (h * w)  # (B, N, N)
            mean = mean_w @ values_s  # (B, 1, C)
            var = ((cov @ values_s) * values_s).sum(dim=1, keepdim=True).clamp(min=0)
            scale = torch.rsqrt(var + norm.eps) * norm.weight.to(stats_dtype)
            folded = values_s * scale + (norm.bias.to(stats_dtype) - mean * scale + 1)
            gate_plus_one = (weights_s @ folded).to(pixels.dtype)  # (B, HW, C)
        visual_out = (pixels * gate_plus_one).view(b, h, w, c).permute(0, 3, 1, 2)
        if self.one_way:
            return visual_out, text

        # language -> vision (Eq. 2-4, second lines)
        tokens = (text * mask.unsqueeze(-1).to(text.dtype)).transpose(1, 2)  # (B, D, N)
        keys = self.l2v_keys_of(tokens)  # (B, C, N)
        logits = keys.transpose(1, 2) @ pixels.transpose(1, 2) / math.sqrt(c)  # (B, N, HW)
        gathered = logits.softmax(dim=-1) @ pixels  # (B, N, C)
        gate = self.gate_l_norm(self.gate_l_conv(gathered.transpose(1, 2)).transpose(1, 2), mask)
        text_out = torch.where(mask.unsqueeze(-1), gate * text + text, text)
        return visual_out, text_out
