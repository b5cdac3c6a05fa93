"""Convert an official Swin Transformer checkpoint for BTDNet's vision backbone.

The official release (github.com/microsoft/Swin-Transformer, e.g.
``swin_base_patch4_window12_384_22k.pth``) names its weights ``layers.*``, ``patch_embed.proj``,
``attn.qkv`` and ``mlp.fc1``; the Swin of mmseg and of mmpretrain, either of which is
``BidirectionalFeatureExtractor.vision``, names them ``stages.*``, ``patch_embed.projection``,
``attn.w_msa.qkv`` and ``ffn.layers.0.0``. Patch merging also orders its 4C input channels
differently: the official code concatenates the 2 x 2 neighbours as (even row, even col),
(odd row, even col), (even row, odd col), (odd row, odd col), C channels each, while
``nn.Unfold`` gives channel-major order ``c * 4 + 2 * row + col``. The converter permutes the
reduction weights and norm parameters accordingly, maps the final ``norm`` to the last stage's
out norm (``norm3`` for four stages), and drops the classifier ``head`` and the buffers that
the Swin implementation computes itself (``attn_mask``, ``relative_position_index``: the same
index, recomputed for the configured window size). Resizing the relative-position tables to
another window size stays with the Swin implementation.

Usage::

    python tools/model_converters/swin2btdnet.py \
        swin_base_patch4_window12_384_22k.pth pretrain/swin_base_patch4_window12_384_22k.pth

and name the output in the config: ``vision=dict(..., init_cfg=dict(type='Pretrained',
checkpoint='pretrain/swin_base_patch4_window12_384_22k.pth'))``.
"""

import argparse
import os
import os.path as osp
import re
from collections import OrderedDict

import torch

# official PatchMerging concatenation order: index q of (row offset, col offset)
_OFFICIAL_ORDER = [(0, 0), (1, 0), (0, 1), (1, 1)]
# nn.Unfold order p = 2 * row + col, read from the official index q
_UNFOLD_FROM_OFFICIAL = [_OFFICIAL_ORDER.index((p // 2, p % 2)) for p in range(4)]


def _unfold_order(t: torch.Tensor) -> torch.Tensor:
    """Reorder the last dim (4C, official neighbour-major) into nn.Unfold's channel-major."""
    four_c = t.shape[-1]
    if four_c % 4:
        raise ValueError(f'patch-merging tensor last dim must be a multiple of 4; got {four_c}')
    c = four_c // 4
    t = t.reshape(*t.shape[:-1], 4, c)[..., _UNFOLD_FROM_OFFICIAL, :]  # (..., p, c)
    return t.transpose(-1, -2).reshape(*t.shape[:-2], four_c).contiguous()


def convert_swin(official: dict) -> OrderedDict:
    """Map an official Swin state dict to the key layout of mmseg's / mmpretrain's Swin.

    Args:
        official (dict): The official state dict (the ``'model'`` entry of the release file).

    Returns:
        OrderedDict: The converted state dict (no prefix).
    """
    stage_ids = {int(m.group(1)) for k in official if (m := re.match(r'layers\.(\d+)\.', k))}
    if not stage_ids:
        raise ValueError(
            'swin2btdnet: no "layers.<i>." keys: this is not an official Swin checkpoint '
            f'(first keys: {list(official)[:5]}).'
        )
    last_stage = max(stage_ids)
    converted = OrderedDict()
    for key, value in official.items():
        if key.startswith('head.') or key.endswith(('attn_mask', 'relative_position_index')):
            continue
        new_key = key
        if key.startswith('patch_embed.proj.'):
            new_key = key.replace('patch_embed.proj.', 'patch_embed.projection.', 1)
        elif key.startswith('norm.'):
            new_key = f'norm{last_stage}.' + key[len('norm.') :]
        elif key.startswith('layers.'):
            new_key = 'stages.' + key[len('layers.') :]
            new_key = new_key.replace('.attn.', '.attn.w_msa.')
            new_key = new_key.replace('.mlp.fc1.', '.ffn.layers.0.0.')
            new_key = new_key.replace('.mlp.fc2.', '.ffn.layers.1.')
            if '.downsample.' in key:
                value = _unfold_order(value)
        converted[new_key] = value
    return converted


def parse_args():
    parser = argparse.ArgumentParser(
        description='Convert an official Swin checkpoint to the layout BTDNet loads.'
    )
    parser.add_argument('src', help='official checkpoint, e.g. swin_base_patch4_window12_384_22k')
    parser.add_argument('dst', help='output path, e.g. pretrain/swin_base_..._22k.pth')
    return parser.parse_args()


def main():
    args = parse_args()
    if not osp.isfile(args.src):
        raise FileNotFoundError(f'swin2btdnet: source checkpoint {args.src!r} does not exist.')
    ckpt = torch.load(args.src, map_location='cpu', weights_only=True)
    state = ckpt.get('model', ckpt.get('state_dict', ckpt)) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f'swin2btdnet: {args.src!r} holds no state dict.')
    converted = convert_swin(state)
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(
        dict(state_dict=converted, meta=dict(converted_from=osp.basename(args.src))), args.dst
    )
    print(f'{len(converted)} tensors written to {args.dst}')


if __name__ == '__main__':
    main()
