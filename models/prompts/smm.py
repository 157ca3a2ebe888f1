"""SMM, sample-specific masked visual reprogramming (Cai et al., ICML 2024).

``x' = z + delta * upsample(mask_network(z))`` with ``z = normalize(resize(x))``: the image is
resized to the network's input size (antialiased bilinear, on the device) and normalized; a small
CNN computes from ``z`` a 3-channel mask at ``1/P`` of the resolution; each mask value is copied
over its ``P x P`` patch (patch-wise interpolation, cheaper than bilinear and what the paper
uses); a shared full-size pattern ``delta`` (zero at the start, no sigmoid) is multiplied by the
mask and added. So every image gets its own prompt, a reweighting of one shared pattern.

The mask network (SMM's defaults, ``--mask-layers 5 --mask-patch 8``): 3x3 convolutions
``3 -> 8 -> 16 -> 32 -> 64`` each with batch norm and ReLU, a 2x2 max-pool after each of the
first three, and a last 3x3 convolution ``64 -> 3`` (26,499 parameters). ``--mask-layers 6``
adds the ``64 -> 128`` stage that the paper uses for ViT. Its batch norms train with the prompt
(the model puts the prompt in train mode while the frozen network stays in eval), so the mask
depends on the other images of a training batch, as in the paper.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from common.errors import UserError
from models.layers import Normalize, full_pattern, resize_square
from models.prompts.registry import PromptOptions, register_prompt

FIRST_WIDTH = 8  # channels of the first stage; each stage doubles them


def patchwise_upsample(mask: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, C, h, w] -> [B, C, h * patch, w * patch]``: each value copied over its ``patch x patch`` block."""
    b, c, h, w = mask.shape
    return mask[:, :, :, None, :, None].expand(b, c, h, patch, w, patch).reshape(b, c, h * patch, w * patch)


class MaskNetwork(nn.Sequential):
    """SMM's mask generator: ``layers - 1`` stages of 3x3 conv + batch norm + ReLU (8, 16, 32, ...
    channels), a 2x2 max-pool after each of the first ``log2(patch)``, then a 3x3 conv to
    ``channels``. Its output is ``1/patch`` of the input's resolution."""

    def __init__(self, layers: int = 5, patch: int = 8, channels: int = 3) -> None:
        pools = int(math.log2(patch)) if patch >= 1 else -1
        if patch < 1 or 2**pools != patch:
            raise UserError(f"--mask-patch must be a power of two, got {patch}")
        if layers < 2 or pools > layers - 1:
            raise UserError(f"--mask-layers {layers} leaves {max(0, layers - 1)} stages for the {pools} max-pools of --mask-patch {patch}; use more layers or a smaller patch")
        modules: list[nn.Module] = []
        width_in = channels
        for stage in range(layers - 1):
            width = FIRST_WIDTH * 2**stage
            modules += [nn.Conv2d(width_in, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            if stage < pools:
                modules.append(nn.MaxPool2d(2))
            width_in = width
        modules.append(nn.Conv2d(width_in, channels, 3, padding=1))
        super().__init__(*modules)
        self.patch = patch


@register_prompt("smm")
class SampleSpecificMaskedPrompt(nn.Module):
    """Resize, normalize, add ``delta`` times a per-image mask (see the module docstring).

    Takes images of ``image_size`` or, after SMM's training crop, already of ``out_size``.
    ``image_mask`` is accepted for a uniform constructor and has no effect.
    """

    OPTIONS = ("mask_layers", "mask_patch")
    DEFAULT_AUGMENT = "resize32_crop_flip"  # SMM: resize to size + 32, random crop, horizontal flip
    CROP_FLIP = "resize32_crop_flip"

    def __init__(
        self,
        image_size: tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        out_size: int = 224,
        init: str = "zero",
        image_mask: torch.Tensor | None = None,
        channels: int = 3,
        options: PromptOptions | None = None,
    ) -> None:
        super().__init__()
        options = options or PromptOptions()
        self.image_size = tuple(image_size)
        self.out_size = out_size
        if out_size % options.mask_patch:
            raise UserError(f"--mask-patch {options.mask_patch} must divide the network's {out_size}px input")
        self.delta = nn.Parameter(full_pattern(channels, out_size, init))
        self.mask_network = MaskNetwork(options.mask_layers, options.mask_patch, channels)
        self.normalize = Normalize(mean, std)

    def pattern(self) -> torch.Tensor:
        """The shared pattern ``delta [C, out, out]`` (in normalized units) that the masks reweight."""
        return self.delta

    def mask(self, z: torch.Tensor) -> torch.Tensor:
        """The full-resolution mask ``[B, C, out, out]`` of normalized, resized images ``z``."""
        return patchwise_upsample(self.mask_network(z), self.mask_network.patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) not in (self.image_size, (self.out_size, self.out_size)):
            raise ValueError(f"prompt built for {self.image_size} or {self.out_size}px images, got {tuple(x.shape[-2:])}")
        z = self.normalize(resize_square(x, self.out_size))
        return z + self.delta * self.mask(z)
