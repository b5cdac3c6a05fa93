"""No-target head: does the sentence name anything in the image? (Not in the paper.)

Generalized referring (gRefCOCO / GRES, and the generalized remote-sensing sets) has sentences
that name no object. As ReLA does with its region queries, a small 2-way classifier decides it,
here from the TwinStream head (Eq. 6-9): the sentence's [CLS] token of L* and V* averaged over
its stage-2 tokens (the last MCI round; the lean predict forward computes only those), and, with
``mask_evidence``, what the Fg-Bg predictor found: V_pred pooled with the weights
softmax(O_fg - O_bg) over its pixels (the features of the best match) and two statistics of the
margin O_fg - O_bg (its maximum and its log-mean-exp). Everything is read without gradient: the
head decides from the model and does not reshape it (in trials on the demo's generalized task,
the no-target loss flowing back into L* / V* / the masks slowed the grounding: validation oIoU
41.6-50.5 after 400 iterations against 55.4 without a head). A sample predicted "no target" gets
an empty mask.

    z     = [L*_cls, mean(V*_2), L*_cls * mean(V*_2) (, V_pred pooled by softmax(margin))]
    logit = W_2 ReLU(W_1 LN(z) (+ W_s [max margin, log-mean-exp margin]))
                                                               (B, 2): [target, no target]
    loss  = loss_weight * CE(logit, no_target)
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from mmseg.utils import OptMultiConfig, SampleList
from torch import Tensor

__all__ = ['NoTargetHead', 'no_target_labels']


def no_target_labels(data_samples: SampleList, device=None) -> Tensor:
    """(B,) long: 1 where a sample's metainfo says ``no_target`` (absent: 0, a target)."""
    labels = [bool(s.metainfo.get('no_target', False)) for s in data_samples]
    return torch.tensor(labels, dtype=torch.long, device=device)


@MODELS.register_module()
class NoTargetHead(BaseModule):
    """2-way classifier [target, no target] on L* ([CLS]) and pooled V* of the last MCI round.

    Args:
        in_channels (int): MCI width C of L* and V*.
        channels (int): Hidden width of the classifier.
        loss_weight (float): Weight of the cross-entropy. Default 0.05: the head reads the model
            without gradient, so the weight only scales its own gradients, which an Adam-type
            optimizer's steps do not depend on; kept small, they take little of a global
            gradient-clipping budget (``clip_grad``) that the rest of the model shares.
        no_target_weight (float): Class weight of "no target" in the cross-entropy (the other
            class weighs 1); above 1 where no-target samples are rare. Default 1.0.
        mask_evidence (bool): Also read what the Fg-Bg predictor found (V_pred pooled where the
            target logit wins, and the margin's statistics). Default True.
        threshold (float): A sample is "no target" where the no-target probability reaches this.
            Default 0.5 (the arg-max).
        loss_name (str): Key of the loss; must start with ``loss_``.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(
        self,
        in_channels: int = 256,
        channels: int = 256,
        loss_weight: float = 0.05,
        no_target_weight: float = 1.0,
        threshold: float = 0.5,
        mask_evidence: bool = True,
        loss_name: str = 'loss_nt',
        init_cfg: OptMultiConfig = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if not loss_name.startswith('loss_'):
            raise ValueError(f'NoTargetHead: loss_name must start with "loss_", got {loss_name!r}.')
        if not 0.0 < threshold < 1.0:
            raise ValueError(f'NoTargetHead: threshold must lie in (0, 1), got {threshold}.')
        self.in_channels = in_channels
        self.loss_weight = loss_weight
        self.threshold = threshold
        self.loss_name = loss_name
        self.mask_evidence = mask_evidence
        self.register_buffer('class_weight', torch.tensor([1.0, float(no_target_weight)]))
        width = (4 if mask_evidence else 3) * in_channels
        self.features = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, channels))
        self.margin_stats = nn.Linear(2, channels) if mask_evidence else None
        self.classifier = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(channels, 2))

    def forward(self, decode_outputs: dict) -> Tensor:
        """No-target logits from the TwinStream head's forward.

        Args:
            decode_outputs (dict): ``text_star`` L* (B, N, C), ``visual_star`` V* (B, S, C) and
                ``spatial_shapes`` (its first level: the stage-2 tokens, which come first); with
                ``mask_evidence`` also ``seg_logits`` (B, 2, h, w) and ``pixel_features``
                V_pred (B, C, h, w).

        Returns:
            Tensor: (B, 2) logits, [target, no target].
        """
        # Read, not trained: the no-target loss does not reshape the features it decides from.
        text_star = decode_outputs['text_star'].detach()
        visual_star = decode_outputs['visual_star'].detach()
        if text_star.shape[-1] != self.in_channels:
            raise ValueError(
                f'NoTargetHead: expected L* with in_channels={self.in_channels}, found '
                f'{tuple(text_star.shape)}.'
            )
        h, w = (int(v) for v in decode_outputs['spatial_shapes'][0])
        cls, pooled = text_star[:, 0], visual_star[:, : h * w].mean(1)
        parts = [cls, pooled, cls * pooled]
        if not self.mask_evidence:
            return self.classifier(self.features(torch.cat(parts, dim=-1)))
        logits = decode_outputs['seg_logits'].detach()
        margin = (logits[:, 1] - logits[:, 0]).flatten(1).float()  # (B, hw)
        weights = margin.softmax(1).to(logits.dtype)
        pixels = decode_outputs['pixel_features'].detach().flatten(2)
        parts.append(torch.einsum('bcn,bn->bc', pixels, weights))
        stats = torch.stack(
            (margin.amax(1), margin.logsumexp(1) - math.log(margin.shape[1])), dim=1
        ).to(cls.dtype)
        hidden = self.features(torch.cat(parts, dim=-1)) + self.margin_stats(stats)
        return self.classifier(hidden)

    def loss(self, decode_outputs: dict, data_samples: SampleList) -> dict:
        """Cross-entropy against each sample's ``no_target`` (metainfo; absent means a target).

        Returns:
            dict: ``{loss_name: loss}`` and ``acc_nt`` (percent of samples decided right).
        """
        logits = self.forward(decode_outputs).float()
        labels = no_target_labels(data_samples, logits.device)
        loss = F.cross_entropy(logits, labels, weight=self.class_weight.to(logits))
        acc = (logits.argmax(1) == labels).float().mean() * 100
        return {self.loss_name: self.loss_weight * loss, 'acc_nt': acc.detach()}

    def no_target_prob(self, logits: Tensor) -> Tensor:
        """(B,) probability of "no target" from the (B, 2) logits."""
        return logits.float().softmax(-1)[:, 1]
