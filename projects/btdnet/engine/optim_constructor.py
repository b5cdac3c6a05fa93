"""Parameter groups of the paper's recipe (Sec. IV-B): two learning rates, no decay on norms."""

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def _is_norm(module: nn.Module) -> bool:
    """torch's normalisation layers, and custom ones named like them (``MaskedInstanceNorm1d``)."""
    return isinstance(module, _NORM_TYPES) or 'Norm' in type(module).__name__


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class BTDNetOptimWrapperConstructor:
    """Split a model's parameters into (encoder | rest) x (decay | no decay) groups.

    The paper trains the pretrained encoders (Swin and BERT) at a tenth of the learning rate of
    the freshly initialised modules (BSC, decoder, heads), and, as LAVT does, applies no weight
    decay to normalisation layers, position embeddings and relative-position bias tables.
    mmengine's ``DefaultOptimWrapperConstructor`` cannot express this: a parameter matching a
    ``custom_keys`` entry (the encoder prefix) skips its norm rule. Every trainable parameter
    lands in exactly one group; frozen ones in none.

    Config::

        optim_wrapper = dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.01),
            constructor='BTDNetOptimWrapperConstructor',
            paramwise_cfg=dict(encoder_lr_mult=0.1))

    Args:
        optim_wrapper_cfg (dict): The ``optim_wrapper`` config (``optimizer`` inside).
        paramwise_cfg (dict, optional): ``encoder_prefixes`` (names of encoder parameters start
            with one of these; default ``('backbone.vision.', 'backbone.text_encoder.')``),
            ``encoder_lr_mult`` (default 0.1) and ``no_decay_keys`` (substrings of parameter
            names kept free of weight decay besides norm layers; default position embeddings
            and relative-position tables).
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        self.optim_wrapper_cfg = dict(optim_wrapper_cfg)
        self.optimizer_cfg = dict(self.optim_wrapper_cfg.pop('optimizer'))
        self.encoder_prefixes = tuple(
            paramwise_cfg.pop('encoder_prefixes', ('backbone.vision.', 'backbone.text_encoder.'))
        )
        self.encoder_lr_mult = float(paramwise_cfg.pop('encoder_lr_mult', 0.1))
        self.no_decay_keys = tuple(
            paramwise_cfg.pop(
                'no_decay_keys',
                ('absolute_pos_embed', 'position_embeddings', 'relative_position_bias_table'),
            )
        )
        if paramwise_cfg:
            raise KeyError(
                f'unknown paramwise_cfg keys for {type(self).__name__}: {sorted(paramwise_cfg)}'
            )

    def param_groups(self, model: nn.Module) -> list[dict]:
        """The optimizer's parameter groups, each named in its ``'name'`` key."""
        base_lr = self.optimizer_cfg['lr']
        base_wd = self.optimizer_cfg.get('weight_decay', 0.0)
        norm_params = {
            id(p) for m in model.modules() if _is_norm(m) for p in m.parameters(recurse=False)
        }
        groups = {}
        for name, param in model.named_parameters():  # shared parameters are yielded once
            if not param.requires_grad:
                continue
            encoder = name.startswith(self.encoder_prefixes)
            no_decay = id(param) in norm_params or any(k in name for k in self.no_decay_keys)
            key = ('encoder' if encoder else 'decoder') + ('_no_decay' if no_decay else '')
            group = groups.setdefault(
                key,
                dict(
                    name=key,
                    params=[],
                    param_names=[],
                    lr=base_lr * (self.encoder_lr_mult if encoder else 1.0),
                    weight_decay=0.0 if no_decay else base_wd,
                ),
            )
            group['params'].append(param)
            group['param_names'].append(name)
        return list(groups.values())

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if hasattr(model, 'module'):  # DDP / model wrappers
            model = model.module
        groups = self.param_groups(model)
        for group in groups:
            print_log(
                f'optimizer group {group["name"]}: {len(group["params"])} tensors, '
                f'lr {group["lr"]:g}, weight decay {group["weight_decay"]:g}',
                logger='current',
            )
            del group['param_names']
        optimizer = OPTIMIZERS.build(dict(self.optimizer_cfg, params=groups))
        return OPTIM_WRAPPERS.build(self.optim_wrapper_cfg, default_args=dict(optimizer=optimizer))
