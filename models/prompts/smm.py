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

import argparse
import math
from dataclasses import dataclass

import torch
from torch import nn

from common.argtypes import positive_float, positive_int
from common.errors import UserError
from common.options import Options, option
from models.patterns import drawing_from, initial_values
from models.prompts.base import PromptSpec, VisualPrompt
from models.prompts.registry import register_prompt

FIRST_WIDTH = 8  # channels of the first stage; each stage doubles them


@dataclass(frozen=True)
class SmmOptions(Options):
    mask_layers: int = option(5, "convolutions of the mask network (5: 3-8-16-32-64-3 as for ResNets in SMM; 6 adds 64-128 as for ViT)",
                              type=positive_int, metavar="N")  # fmt: skip
    mask_patch: int = option(8, "each mask value covers a P x P patch (P a power of two; log2 P max-pools)", type=positive_int, metavar="P")
    mask_lr: float | None = option(None, "Adam learning rate of the mask network (SMM: 0.01 for CNNs, 0.001 for ViT)", default_help="--lr",
                                   type=positive_float, metavar="LR")  # fmt: skip
    mask_decay: bool = option(True, "decay the mask network's learning rate with --scheduler like the pattern's; SMM keeps it constant for ViT: --no-mask-decay",
                              default_help="on", action=argparse.BooleanOptionalAction)  # fmt: skip


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


@register_prompt("smm", "SMM: the resized image plus a shared pattern reweighted per image by a small mask network (Cai et al., 2024)")
class SampleSpecificMaskedPrompt(VisualPrompt):
    """Resize, normalize, add ``delta`` times a per-image mask (see the module docstring).

    Takes images of ``image_size`` or, after SMM's training crop, already of ``out_size``.
    ``spec.image_mask`` has no effect. The mask network's weights are drawn from
    ``spec.generator`` (PyTorch's default initialisers, after ``delta``'s draws).
    """

    OPTIONS = SmmOptions
    BATCH_DEPENDENT = True  # the mask network's batch norms train on the batch
    DEFAULT_AUGMENT = "resize32_crop_flip"  # SMM: resize to size + 32, random crop, horizontal flip
    CROP_FLIP = "resize32_crop_flip"
    GREY = 0.5  # the image whose prompt picture() draws

    def __init__(self, spec: PromptSpec) -> None:
        super().__init__(spec)
        options = self.options
        if spec.out_size % options.mask_patch:
            raise UserError(f"--mask-patch {options.mask_patch} must divide the network's {spec.out_size}px input")
        self.delta = nn.Parameter(initial_values((spec.channels, spec.out_size, spec.out_size), spec.init, spec.generator, self.RANDN_SCALE))
        with drawing_from(spec.generator):
            self.mask_network = MaskNetwork(options.mask_layers, options.mask_patch, spec.channels)

    def pattern(self) -> torch.Tensor:
        """The shared pattern at mask 1 in pixel units, ``[C, out, out]``: ``delta`` (added after
        normalizing) times the network's std. Each image gets it reweighted by its own mask."""
        return self.delta * self.std

    def shown_pattern(self) -> torch.Tensor:
        """The prompt SMM adds to a uniform mid-grey image, in pixel units: ``std * delta * mask``,
        the mask computed in eval mode (batch norms use their running statistics; nothing is updated)."""
        grey = torch.full((1, self.spec.channels, self.out_size, self.out_size), self.GREY, device=self.delta.device)
        training = self.mask_network.training
        self.mask_network.eval()
        try:
            with torch.no_grad():
                mask = self.mask(self.normalize(grey))[0]
        finally:
            self.mask_network.train(training)
        return self.pattern() * mask

    def parameter_groups(self) -> list[dict]:
        """The mask network at ``--mask-lr``, decayed with the schedule unless ``--no-mask-decay``."""
        params = [p for p in self.mask_network.parameters() if p.requires_grad]
        return [{"name": "mask", "params": params, "lr": self.options.mask_lr, "scheduled": bool(self.options.mask_decay)}]

    def mask(self, z: torch.Tensor) -> torch.Tensor:
        """The full-resolution mask ``[B, C, out, out]`` of normalized, resized images ``z``."""
        return patchwise_upsample(self.mask_network(z), self.mask_network.patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_size(x)
        z = self.normalize(self.fit(x))
        return z + self.delta * self.mask(z)
