"""Multi-scale Context Integration (MCI) of the Target-Background TwinStream decoder, Eq. 5-7.

The paper (Sec. III-D-1) fuses the stage 2-4 visual features V'_2..4 with the last-stage text
features L'_4 in T rounds:

    V_con = Flat(Concat({phi(V'_i)}_{i=2..4}))                      (Eq. 5)
    L*    = Proj(FFN(CrossAtt(L'_4, V_con)))                        (Eq. 6)
    V*    = Proj(MSAttn(CrossAtt(V_con, L*)))                       (Eq. 7)

where V* and L* of one round are the V_con and L'_4 of the next. This file holds the pieces:

* :class:`CrossAttention`: multi-head attention through ``F.scaled_dot_product_attention`` with a
  key padding mask (text padding is never attended to);
* :class:`MSDeformAttn`: mmcv's ``MultiScaleDeformableAttention`` whose forward picks mmcv's CUDA
  kernel only where mmcv was compiled with CUDA ops, and a pure-PyTorch path otherwise (CPU
  tensors, or CUDA tensors with a CPU-only mmcv build): :func:`ms_deform_attn_pytorch` (mmcv's
  ``multi_scale_deformable_attn_pytorch`` with a faster memory layout) when gradients are
  recorded or the model is exported to ONNX, :func:`ms_deform_attn_gather` (an ``embedding_bag``
  gather) otherwise, or mmcv's own function;
* :class:`MCILayer`: one round (Eq. 6-7);
* :class:`MultiScaleContextIntegration`: Eq. 5 (the phi projections and the flattening) followed by
  T rounds; returns V* and L* for the Fg-Bg predictor and the rephrase head.

Departures from the paper (docs/paper_mapping.md gives the reasons): each cross-attention and the
FFN add their input back and are followed by a LayerNorm, as in a standard transformer decoder
layer (the paper draws neither); a learnable embedding per level is added to V_con so that the
attention can tell the levels apart; the width C is 256, not BERT's 768, and L'_4 is projected
from 768 to it (at 768 the three rounds would cost 73 GFLOPs at 512 x 512 instead of 9.5); each of
the T rounds has its own weights.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.ops.multi_scale_deform_attn import (
    MultiScaleDeformableAttention,
    MultiScaleDeformableAttnFunction,
    multi_scale_deformable_attn_pytorch,
)
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor

__all__ = [
    'CrossAttention',
    'MSDeformAttn',
    'MCILayer',
    'MultiScaleContextIntegration',
    'mmcv_has_cuda_ops',
    'ms_deform_attn_gather',
    'ms_deform_attn_pytorch',
    'select_ms_deform_attn_impl',
    'split_levels',
]


@functools.cache
def mmcv_has_cuda_ops() -> bool:
    """Whether the installed mmcv was compiled with its CUDA kernels.

    A CPU-only build of mmcv still exposes ``ms_deform_attn_forward`` in ``mmcv._ext``, but calling
    it on a CUDA tensor fails at run time; ``get_compiling_cuda_version`` says which build it is.
    """
    try:
        from mmcv.ops import get_compiling_cuda_version
    except ImportError:  # pragma: no cover - mmcv without compiled ops cannot import mmcv.ops
        return False
    version = str(get_compiling_cuda_version()).strip().lower()
    return version not in ('', 'not available', 'none')


def select_ms_deform_attn_impl(device: torch.device) -> str:
    """Chooses the multi-scale deformable attention implementation for tensors on ``device``.

    Args:
        device (torch.device): Device of the value tensor.

    Returns:
        str: ``'mmcv_cuda'`` (mmcv's compiled kernel) for CUDA tensors when mmcv has CUDA ops,
        otherwise ``'pytorch'`` (``multi_scale_deformable_attn_pytorch``, any device). While a
        model is exported to ONNX (``torch.onnx.is_in_onnx_export()``) always ``'pytorch'``:
        the exported graph must not call mmcv's kernel, which ONNX does not know.
    """
    if torch.onnx.is_in_onnx_export():
        return 'pytorch'
    if torch.device(device).type == 'cuda' and mmcv_has_cuda_ops():
        return 'mmcv_cuda'
    return 'pytorch'


def ms_deform_attn_pytorch(
    value: Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    locations: Tensor,
    weights: Tensor,
) -> Tensor:
    """Multi-scale deformable attention in plain PyTorch, any device.

    Computes what mmcv's ``multi_scale_deformable_attn_pytorch`` computes, with another layout:
    the sampling points go on the grid's height, so ``grid_sample`` returns (B * heads, d, P, Nq)
    and the weighted sum over points is P fused multiply-adds over contiguous (d, Nq) slabs,
    instead of mmcv's stack of all levels and a reduction over a trailing axis of size P (about
    3x faster on CPU at 512 x 512; the tests check both agree).

    Args:
        value (Tensor): (B, S, heads, d), the levels' tokens concatenated, row-major each.
        spatial_shapes (Sequence[tuple[int, int]]): (H_l, W_l) of each level.
        locations (Tensor): (B, Nq, heads, L, P, 2), normalised (x, y) in [0, 1].
        weights (Tensor): (B, Nq, heads, L, P), attention weights.

    Returns:
        Tensor: (B, Nq, heads * d).
    """
    batch, _, heads, dims = value.shape
    _, num_q, _, levels, points, _ = locations.shape
    # grid_sample's coordinates are in [-1, 1]; layout (B * heads, L, P, Nq, 2).
    grids = (
        (2 * locations - 1)
        .permute(0, 2, 3, 4, 1, 5)
        .reshape(batch * heads, levels, points, num_q, 2)
    )
    weights = weights.permute(0, 2, 3, 4, 1).reshape(batch * heads, levels, points, 1, num_q)
    out = value.new_zeros(batch * heads, dims, num_q)
    sizes = [h * w for h, w in spatial_shapes]
    for level, ((h, w), tokens) in enumerate(zip(spatial_shapes, value.split(sizes, 1))):
        level_map = tokens.permute(0, 2, 3, 1).reshape(batch * heads, dims, h, w)
        sampled = F.grid_sample(
            level_map, grids[:, level], mode='bilinear', padding_mode='zeros', align_corners=False
        )  # (B * heads, d, P, Nq)
        for point in range(points):
            out.addcmul_(sampled[:, :, point], weights[:, level, point])
    return out.view(batch, heads * dims, num_q).transpose(1, 2)


def ms_deform_attn_gather(
    value: Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    locations: Tensor,
    weights: Tensor,
) -> Tensor:
    """Multi-scale deformable attention as weighted gathers (the pure-PyTorch path, no_grad).

    The same function as :func:`ms_deform_attn_pytorch`, computed without ``grid_sample``: each
    level's value map gets a zero border (one pixel before, two after, on both axes), every
    sampling point is clamped into it (points wholly outside sample zeros either way), and its
    four bilinear corners, weighted by corner weight x attention weight, are summed by
    ``F.embedding_bag`` straight from the (pixel, head) rows of the value, so neither the
    (heads, d, P, Nq) samples nor a transposed value map is built. About 1.5x faster than
    :func:`ms_deform_attn_pytorch` at 512 x 512 on CPU, but its backward is slower (that of
    ``embedding_bag``), so :class:`MSDeformAttn` uses it where no gradient is recorded.

    Args and returns: as :func:`ms_deform_attn_pytorch`; ``locations`` and ``weights`` may be
    float32 for a half-precision ``value`` (the coordinates and bilinear fractions are computed
    in their dtype, the corner weights cast to the value's for ``embedding_bag``).
    """
    batch, _, heads, dims = value.shape
    _, num_q, _, _, points, _ = locations.shape
    num_bags = batch * num_q * heads
    out = None
    heads_idx = torch.arange(heads, device=value.device)
    sizes = [h * w for h, w in spatial_shapes]
    for level, ((h, w), tokens) in enumerate(zip(spatial_shapes, value.split(sizes, 1))):
        padded_w = w + 3
        table = F.pad(tokens.reshape(batch, h, w, heads * dims), (0, 0, 1, 2, 1, 2))
        row_base = (
            torch.arange(batch, device=value.device)[:, None] * (table.shape[1] * padded_w * heads)
            + heads_idx
        )[:, None, :, None]  # (B, 1, heads, 1): row of pixel (0, 0) of each sample and head
        # Pixel coordinates (align_corners=False: x W - 0.5), shifted by the 1-pixel border.
        x = (locations[:, :, :, level, :, 0] * w + 0.5).clamp_(0, w + 1)
        y = (locations[:, :, :, level, :, 1] * h + 0.5).clamp_(0, h + 1)
        x0, y0 = x.floor(), y.floor()
        frac_x, frac_y = x - x0, y - y0
        rows = (y0.long() * padded_w + x0.long()) * heads + row_base  # (B, Nq, heads, P)
        weight_y1 = weights[:, :, :, level] * frac_y
        weight_y0 = weights[:, :, :, level] - weight_y1
        for row_step, weight_y in ((0, weight_y0), (padded_w * heads, weight_y1)):
            weight_x1 = weight_y * frac_x
            for col_step, corner_weight in ((0, weight_y - weight_x1), (heads, weight_x1)):
                sampled = F.embedding_bag(
                    (rows + (row_step + col_step)).view(num_bags, points),
                    table.view(-1, dims),
                    per_sample_weights=corner_weight.reshape(num_bags, points).to(value.dtype),
                    mode='sum',
                )
                out = sampled if out is None else out.add_(sampled)
    return out.view(batch, num_q, heads * dims)


class CrossAttention(nn.Module):
    """Multi-head cross-attention with a key padding mask (the paper's ``CrossAtt``).

    Args:
        embed_dims (int): Width of the queries and of the output.
        num_heads (int): Number of heads; must divide ``embed_dims``.
        kv_dims (int, optional): Width of the keys/values; ``embed_dims`` when None.
        dropout (float): Attention dropout during training.
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int = 8,
        kv_dims: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(
                f'CrossAttention: embed_dims ({embed_dims}) must be divisible by num_heads '
                f'({num_heads}).'
            )
        kv_dims = embed_dims if kv_dims is None else kv_dims
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dims, embed_dims)
        self.k_proj = nn.Linear(kv_dims, embed_dims)
        self.v_proj = nn.Linear(kv_dims, embed_dims)
        self.out_proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, query: Tensor, key_value: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """Attends from ``query`` to ``key_value``.

        Args:
            query (Tensor): (B, Nq, embed_dims).
            key_value (Tensor): (B, Nk, kv_dims), used as both keys and values.
            key_mask (Tensor, optional): (B, Nk), 1 (or True) for keys that may be attended to,
                0 for padding. Every row needs at least one valid key (text always has [CLS]).

        Returns:
            Tensor: (B, Nq, embed_dims).
        """
        batch, num_q, _ = query.shape
        num_k = key_value.shape[1]
        heads = self.num_heads
        q = self.q_proj(query).view(batch, num_q, heads, -1).transpose(1, 2)
        k = self.k_proj(key_value).view(batch, num_k, heads, -1).transpose(1, 2)
        v = self.v_proj(key_value).view(batch, num_k, heads, -1).transpose(1, 2)
        attn_mask = None
        if key_mask is not None:
            if key_mask.shape != (batch, num_k):
                raise ValueError(
                    f'CrossAttention: key_mask must have shape (B, Nk) = {(batch, num_k)}, '
                    f'found {tuple(key_mask.shape)}.'
                )
            attn_mask = key_mask.bool()[:, None, None, :]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, num_q, self.embed_dims))


class MSDeformAttn(MultiScaleDeformableAttention):
    """mmcv's multi-scale deformable attention (the paper's ``MSAttn``), batch first.

    The parameters and their initialisation are mmcv's. The forward is ours so that the kernel is
    chosen by :func:`select_ms_deform_attn_impl`: mmcv's own forward calls the compiled CUDA kernel
    for every CUDA tensor, which fails where mmcv was built without CUDA ops.

    Args:
        embed_dims (int): Width of queries and values.
        num_heads (int): Attention heads.
        num_levels (int): Feature levels (3: stages 2-4).
        num_points (int): Sampling points per head and level.
        dropout (float): Dropout on the output before the residual.
        im2col_step (int): Step of mmcv's CUDA kernel.
        pytorch_impl (str): The pure-PyTorch path: ``'btdnet'`` (faster:
            :func:`ms_deform_attn_pytorch` when gradients are recorded or the model is exported
            to ONNX, :func:`ms_deform_attn_gather` otherwise) or ``'mmcv'`` (mmcv's
            ``multi_scale_deformable_attn_pytorch``).
    """

    def __init__(
        self,
        embed_dims: int = 256,
        num_heads: int = 8,
        num_levels: int = 3,
        num_points: int = 4,
        dropout: float = 0.0,
        im2col_step: int = 64,
        pytorch_impl: str = 'btdnet',
    ) -> None:
        if pytorch_impl not in ('btdnet', 'mmcv'):
            raise ValueError(
                f"MSDeformAttn: pytorch_impl must be 'btdnet' or 'mmcv', found {pytorch_impl!r}."
            )
        super().__init__(
            embed_dims=embed_dims,
            num_heads=num_heads,
            num_levels=num_levels,
            num_points=num_points,
            im2col_step=im2col_step,
            dropout=dropout,
            batch_first=True,
        )
        self.pytorch_impl = pytorch_impl

    def forward(  # type: ignore[override]
        self,
        query: Tensor,
        reference_points: Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        value: Tensor | None = None,
        identity: Tensor | None = None,
    ) -> Tensor:
        """Samples ``value`` around each query's reference point on every level.

        Args:
            query (Tensor): (B, Nq, C).
            reference_points (Tensor): (B, Nq, num_levels, 2), normalised (x, y) in [0, 1].
            spatial_shapes (Sequence[tuple[int, int]]): (H_l, W_l) of each level, as Python ints
                (no device round trip on the pure-PyTorch path).
            value (Tensor, optional): (B, Nv, C) with Nv = sum H_l W_l; ``query`` when None.
            identity (Tensor, optional): Residual added to the output; ``query`` when None.

        Returns:
            Tensor: (B, Nq, C).
        """
        value = query if value is None else value
        identity = query if identity is None else identity
        batch, num_q, _ = query.shape
        num_v = value.shape[1]
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        shapes = [(int(h), int(w)) for h, w in spatial_shapes]
        if len(shapes) != levels or sum(h * w for h, w in shapes) != num_v:
            raise ValueError(
                f'MSDeformAttn: expected {levels} levels whose sizes sum to the {num_v} value '
                f'tokens, found spatial_shapes {shapes}.'
            )
        value = self.value_proj(value).view(batch, num_v, heads, -1)
        offsets = self.sampling_offsets(query).view(batch, num_q, heads, levels, points, 2)
        weights = self.attention_weights(query).view(batch, num_q, heads, levels * points)
        # float32 as CUDA autocast runs softmax (CPU autocast would keep bfloat16)
        weights = weights.to(torch.promote_types(weights.dtype, torch.float32))
        # softmax over the L * P (12) weights written out: torch's softmax kernel vectorises
        # along the softmax dimension and is ~5x slower on CPU for one this short.
        weights = (weights - weights.amax(-1, keepdim=True)).exp()
        weights = (weights / weights.sum(-1, keepdim=True)).view(
            batch, num_q, heads, levels, points
        )
        # Offsets are in pixels of each level; (W_l, H_l) turns them into normalised units.
        normaliser = offsets.new_tensor([[w, h] for h, w in shapes])
        locations = (
            reference_points[:, :, None, :, None, :]
            + offsets / normaliser[None, None, None, :, None, :]
        )
        if select_ms_deform_attn_impl(value.device) == 'mmcv_cuda':
            shapes_t = torch.tensor(shapes, dtype=torch.long, device=value.device)
            sizes = [h * w for h, w in shapes]
            starts = torch.tensor(
                [sum(sizes[:i]) for i in range(levels)], dtype=torch.long, device=value.device
            )
            out = MultiScaleDeformableAttnFunction.apply(
                value, shapes_t, starts, locations, weights, self.im2col_step
            )
        else:
            # The gather needs F.embedding_bag, which ONNX has no operator for: an export takes
            # the grid_sample form (ONNX GridSample) instead.
            gather = not torch.is_grad_enabled() and not torch.onnx.is_in_onnx_export()
            if self.pytorch_impl == 'btdnet' and gather:
                # Coordinates at least in float32 (bfloat16 steps by 0.5 pixel from 64 on).
                coord = torch.promote_types(locations.dtype, torch.float32)
                out = ms_deform_attn_gather(value, shapes, locations.to(coord), weights.to(coord))
            else:
                # grid_sample wants one dtype (AMP may hand us a half value and float offsets).
                fallback = (
                    ms_deform_attn_pytorch
                    if self.pytorch_impl == 'btdnet'
                    else multi_scale_deformable_attn_pytorch
                )
                out = fallback(value, shapes, locations.to(value.dtype), weights.to(value.dtype))
        return self.dropout(self.output_proj(out)) + identity


class MCILayer(BaseModule):
    """One round of the Multi-scale Context Integration, Eq. 6-7.

    ``L* = Proj(FFN(CrossAtt(L, V)))`` with the text as query, then
    ``V* = Proj(MSAttn(CrossAtt(V, L*)))`` with the visual tokens as query and the padding of L*
    masked out. Each cross-attention / FFN block has a residual and a LayerNorm after it (our
    choice, the paper draws neither). MSAttn is deformable self-attention over the visual tokens
    with its own residual (mmcv's ``identity``); the LayerNorm after it comes before Proj.

    Args:
        embed_dims (int): MCI width C.
        num_heads (int): Heads of the cross-attentions and of MSAttn.
        num_levels (int): Levels of MSAttn.
        num_points (int): Sampling points of MSAttn.
        ffn_ratio (int): Hidden width of the FFN as a multiple of C.
        dropout (float): Dropout in attention and FFN.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(
        self,
        embed_dims: int = 256,
        num_heads: int = 8,
        num_levels: int = 3,
        num_points: int = 4,
        ffn_ratio: int = 4,
        dropout: float = 0.0,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.text_attn = CrossAttention(embed_dims, num_heads, dropout=dropout)
        self.text_norm1 = nn.LayerNorm(embed_dims)
        self.text_ffn = nn.Sequential(
            nn.Linear(embed_dims, embed_dims * ffn_ratio),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(embed_dims * ffn_ratio, embed_dims),
        )
        self.text_norm2 = nn.LayerNorm(embed_dims)
        self.text_proj = nn.Linear(embed_dims, embed_dims)
        self.visual_attn = CrossAttention(embed_dims, num_heads, dropout=dropout)
        self.visual_norm1 = nn.LayerNorm(embed_dims)
        self.ms_attn = MSDeformAttn(embed_dims, num_heads, num_levels, num_points, dropout)
        self.visual_norm2 = nn.LayerNorm(embed_dims)
        self.visual_proj = nn.Linear(embed_dims, embed_dims)

    def forward(
        self,
        visual: Tensor,
        text: Tensor,
        text_mask: Tensor,
        reference_points: Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        num_queries: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One round of Eq. 6-7.

        Args:
            visual (Tensor): V_con (or V* of the previous round), (B, S, C).
            text (Tensor): L'_4 projected to C (or L* of the previous round), (B, N, C).
            text_mask (Tensor): (B, N), 1 for real tokens.
            reference_points (Tensor): (B, S, num_levels, 2) token centres.
            spatial_shapes (Sequence[tuple[int, int]]): (H_l, W_l) of each level.
            num_queries (int, optional): Compute V* for the first ``num_queries`` tokens only
                (the last round at inference: the Fg-Bg predictor reads the stage-2 tokens).
                Every token is still a value of MSAttn, so up to MSAttn's sampling all S tokens
                are computed; the outputs for the kept tokens equal those of a full round.
                Default None: all S.

        Returns:
            tuple[Tensor, Tensor]: V* (B, S, C), or (B, num_queries, C), and L* (B, N, C).
        """
        # Eq. 6: the text queries the multi-scale visual tokens.
        text = self.text_norm1(text + self.text_attn(text, visual))
        text = self.text_norm2(text + self.text_ffn(text))
        text_star = self.text_proj(text)
        # Eq. 7: every visual token queries L*, then multi-scale deformable self-attention.
        visual = self.visual_norm1(visual + self.visual_attn(visual, text_star, text_mask))
        query, points = visual, reference_points
        if num_queries is not None:
            query, points = visual[:, :num_queries], reference_points[:, :num_queries]
        visual = self.ms_attn(query, points, spatial_shapes, value=visual)
        visual_star = self.visual_proj(self.visual_norm2(visual))
        return visual_star, text_star


@MODELS.register_module()
class MultiScaleContextIntegration(BaseModule):
    """Multi-scale Context Integration (MCI), Eq. 5-7, run for T rounds.

    Eq. 5: ``phi`` (a 1x1 conv per stage) reduces V'_2, V'_3, V'_4 to the MCI width C, and their
    tokens are concatenated into V_con (B, S, C), S = sum_i H_i W_i; a learnable embedding per level
    (not in the paper) tells the levels apart. L'_4 (the paper's L'_n: the last BERT stage) is
    projected from the text width D to C. Then T rounds of
    :class:`MCILayer` (Eq. 6-7), each round feeding its V*, L* to the next.

    Args:
        in_channels (Sequence[int]): Channels of V'_2, V'_3, V'_4 (Swin-B: 256, 512, 1024).
        text_channels (int): Width D of L'_4 (BERT-base: 768).
        embed_dims (int): MCI width C (256 by default; the paper leaves it open, see the module
            docstring).
        num_rounds (int): T, the number of MCI rounds.
        num_heads (int): Heads of the attentions.
        num_points (int): Sampling points of MSAttn per head and level.
        ffn_ratio (int): FFN expansion of Eq. 6.
        dropout (float): Dropout in attention and FFN.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(
        self,
        in_channels: tuple[int, ...] = (256, 512, 1024),
        text_channels: int = 768,
        embed_dims: int = 256,
        num_rounds: int = 3,
        num_heads: int = 8,
        num_points: int = 4,
        ffn_ratio: int = 4,
        dropout: float = 0.0,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if num_rounds < 1:
            raise ValueError(
                f'MultiScaleContextIntegration: num_rounds must be >= 1, got {num_rounds}.'
            )
        self.in_channels = tuple(in_channels)
        self.embed_dims = embed_dims
        self.num_levels = len(self.in_channels)
        self.input_projs = nn.ModuleList(nn.Conv2d(c, embed_dims, 1) for c in self.in_channels)
        self.level_embed = nn.Parameter(torch.zeros(self.num_levels, embed_dims))
        self.text_in_proj = nn.Linear(text_channels, embed_dims)
        self.layers = nn.ModuleList(
            MCILayer(embed_dims, num_heads, self.num_levels, num_points, ffn_ratio, dropout)
            for _ in range(num_rounds)
        )
        nn.init.normal_(self.level_embed, std=0.02)

    @staticmethod
    def reference_points(
        spatial_shapes: list[tuple[int, int]],
        batch: int,
        num_levels: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Tensor:
        """Normalised centre (x, y) of every token, repeated for every level.

        Returns:
            Tensor: (B, S, num_levels, 2).
        """
        points = []
        for h, w in spatial_shapes:
            ys, xs = torch.meshgrid(
                (torch.arange(h, device=device, dtype=dtype) + 0.5) / h,
                (torch.arange(w, device=device, dtype=dtype) + 0.5) / w,
                indexing='ij',
            )
            points.append(torch.stack((xs.reshape(-1), ys.reshape(-1)), -1))
        points = torch.cat(points, 0)
        return points[None, :, None, :].expand(batch, -1, num_levels, -1)

    def forward(
        self,
        visual: list[Tensor],
        text: Tensor,
        text_mask: Tensor,
        first_level_only: bool = False,
    ) -> dict[str, Tensor | list[tuple[int, int]]]:
        """Eq. 5, then T rounds of Eq. 6-7.

        Args:
            visual (list[Tensor]): V'_2, V'_3, V'_4, each (B, C_i, H_i, W_i).
            text (Tensor): L'_4, (B, N, D).
            text_mask (Tensor): (B, N), 1 for real tokens.
            first_level_only (bool): The last round computes V* for the first level's tokens
                only (see :meth:`MCILayer.forward`); the earlier rounds are unchanged, as every
                token of their V* is read by the next round. Default False.

        Returns:
            dict: ``visual`` V* (B, S, C), or (B, H_1 W_1, C) with ``first_level_only``;
            ``text`` L* (B, N, C); ``spatial_shapes`` the (H_i, W_i) of the levels, to split
            V* back into maps.
        """
        if len(visual) != self.num_levels:
            raise ValueError(
                f'MultiScaleContextIntegration: expected {self.num_levels} visual levels '
                f'(channels {self.in_channels}), found {len(visual)}.'
            )
        tokens, shapes = [], []
        for level, (feat, proj) in enumerate(zip(visual, self.input_projs)):
            if feat.shape[1] != self.in_channels[level]:
                raise ValueError(
                    f'MultiScaleContextIntegration: level {level} should have '
                    f'{self.in_channels[level]} channels, found {feat.shape[1]}.'
                )
            shapes.append((feat.shape[2], feat.shape[3]))
            tokens.append(proj(feat).flatten(2).transpose(1, 2) + self.level_embed[level])
        v = torch.cat(tokens, 1)  # V_con, (B, S, C)
        ref = self.reference_points(shapes, v.shape[0], self.num_levels, v.device, v.dtype)
        t = self.text_in_proj(text)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            keep = shapes[0][0] * shapes[0][1] if first_level_only and i == last else None
            v, t = layer(v, t, text_mask, ref, shapes, num_queries=keep)
        return dict(visual=v, text=t, spatial_shapes=shapes)


def split_levels(tokens: Tensor, spatial_shapes: list[tuple[int, int]]) -> list[Tensor]:
    """Splits (B, S, C) tokens back into contiguous maps (B, C, H_i, W_i), one per level.

    Contiguous, not channels-last views of the tokens: a strided map makes the upsampling and
    the sums after it run channels-last and convert back (about 3x slower on CPU).
    """
    maps = []
    for part, (h, w) in zip(tokens.split([h * w for h, w in spatial_shapes], 1), spatial_shapes):
        maps.append(part.transpose(1, 2).reshape(part.shape[0], part.shape[2], h, w).contiguous())
    return maps
