"""Full-resolution refinement of the H/4 logits, guided by the image (not in the paper)."""

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class ImageGuidedRefiner(BaseModule):
    """Corrects the upsampled [O_bg, O_fg] logits near outlines, looking at the image's pixels.

    The TwinStream head predicts at H/4: on small inputs an object is a few logits wide and its
    outline is whatever bilinear upsampling makes of it. This module upsamples the logits to the
    image size and adds a correction computed from the image and the upsampled logits by a few
    small convolutions (3 x 3, the middle ones dilated): ``out = up(O) + f([image, up(O)])``.
    Its last convolution starts at zero, so an untrained refiner returns ``up(O)`` unchanged.

    The paper has no such step; ``BTDNet(refiner=...)`` adds it (the demo config uses it, the
    paper configs do not).

    Args:
        in_channels (int): Channels of the image. Default 3.
        channels (int): Width of the hidden convolutions. Default 16.
        dilations (tuple[int]): One 3 x 3 convolution with ReLU per entry, with that dilation;
            the receptive field is ``1 + 2 * (sum(dilations) + 1)`` pixels. Default (1, 2, 1).
        coarse_loss_weight (float): In training, the head's loss on its own (upsampled) logits
            is added with this weight beside the loss on the refined ones, so the head keeps
            predicting on its own (deep supervision); 0 trains through the refiner only.
            Read by ``BTDNet.loss``. Default 0.5.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(
        self,
        in_channels: int = 3,
        channels: int = 16,
        dilations: tuple[int, ...] = (1, 2, 1),
        coarse_loss_weight: float = 0.5,
        init_cfg=None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if not dilations or min(dilations) < 1:
            raise ValueError(
                f'ImageGuidedRefiner: dilations must list one positive dilation per hidden '
                f'convolution, found {tuple(dilations)}.'
            )
        if coarse_loss_weight < 0:
            raise ValueError(
                f'ImageGuidedRefiner: coarse_loss_weight must be >= 0, found {coarse_loss_weight}.'
            )
        self.in_channels = in_channels
        self.coarse_loss_weight = float(coarse_loss_weight)
        layers, width = [], in_channels + 2
        for d in dilations:
            layers += [nn.Conv2d(width, channels, 3, padding=d, dilation=d), nn.ReLU(inplace=True)]
            width = channels
        self.body = nn.Sequential(*layers)
        self.correction = nn.Conv2d(channels, 2, 3, padding=1)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)
        # Channels-last weights and inputs: oneDNN's convolutions with a few channels at full
        # resolution run about 2.5x faster so on the CPU (forward and backward, 16 channels).
        self.to(memory_format=torch.channels_last)

    def init_weights(self) -> None:
        """Keeps the zero start of the last convolution under any ``init_cfg``."""
        super().init_weights()
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)

    def forward(self, image: Tensor, logits: Tensor, align_corners: bool = False) -> Tensor:
        """Refined logits at the image's size.

        Args:
            image (Tensor): (B, C, H, W) the normalised network input (or a slide crop of it).
            logits (Tensor): (B, 2, h, w) [O_bg, O_fg] at any size (H/4 from the head, or
                already H x W).
            align_corners (bool): Of the bilinear upsampling, as the head's.

        Returns:
            Tensor: (B, 2, H, W).
        """
        if image.dim() != 4 or image.shape[1] != self.in_channels:
            raise ValueError(
                f'ImageGuidedRefiner: image must be (B, {self.in_channels}, H, W), '
                f'found {tuple(image.shape)}.'
            )
        if logits.dim() != 4 or logits.shape[1] != 2 or logits.shape[0] != image.shape[0]:
            raise ValueError(
                f'ImageGuidedRefiner: logits must be ({image.shape[0]}, 2, h, w), '
                f'found {tuple(logits.shape)}.'
            )
        if logits.shape[2:] != image.shape[2:]:
            logits = resize(
                logits, size=image.shape[2:], mode='bilinear', align_corners=align_corners
            )
        inputs = torch.cat([image.to(logits.dtype), logits], 1)
        hidden = self.body(inputs.contiguous(memory_format=torch.channels_last))
        return logits + self.correction(hidden).contiguous()
