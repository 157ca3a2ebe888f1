"""The watermarking visual prompt: resize the image to the network's input, add a full-image pattern.

``x' = normalize(resize(x)) + delta``, as BLM's code places it: the image (in ``[0, 1]``) is
resized bilinearly to ``out_size`` x ``out_size`` on the device, normalized with the network's
statistics, and a trainable pattern ``delta [C, out, out]`` is added to every value of the
normalized input. ``delta`` is unconstrained and there is no clamp, the additive prompt of Bahng
et al. (2022) over the whole image. ``delta`` starts at zero, so the first forward pass sees the
plain resized image. This is the "watermarking" input transform that the BLM paper (Cai et al.,
NeurIPS 2024) pairs with its mappings, next to padding; BLM trains it on ``Resize(228)`` +
``RandomCrop(224)`` views (``--augment resize4_crop``, the default training augmentation).

Adding ``delta`` after normalization rather than before is a reparametrisation (``delta`` here is
``delta_pixel / std``), but Adam's steps are per coordinate, so with the same learning rate this
placement moves the pattern ``std`` times as far per step (about 0.23x for ImageNet statistics,
0.5x for EfficientNet-Lite0's) as adding it before normalization would.
"""
from __future__ import annotations

import torch
from torch import nn

from models.patterns import initial_values
from models.prompts.base import PromptSpec, VisualPrompt
from models.prompts.registry import register_prompt


@register_prompt(
    "watermark",
    "the image resized to the network's input, a trainable unconstrained pattern added over all of it (BLM's watermarking)",
    aliases=("watermarking",),
)
class WatermarkVisualPrompt(VisualPrompt):
    """Resize to ``out_size``, normalize, add ``delta`` everywhere (see the module docstring).

    Inputs of any size are accepted (training views come already cropped to ``out_size``).
    ``spec.image_mask`` (the pixels of the image a pad prompt may write) has no effect: the
    watermark writes every pixel.
    """

    DEFAULT_AUGMENT = "resize4_crop"  # BLM trains the watermark on random crops
    CROP_FLIP = "resize4_crop"  # BLM: Resize(out + 4) + RandomCrop(out), no flip

    def __init__(self, spec: PromptSpec) -> None:
        super().__init__(spec)
        self.delta = nn.Parameter(initial_values((spec.channels, spec.out_size, spec.out_size), spec.init, spec.generator, self.RANDN_SCALE))

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        return self.fit(x)

    def pattern(self) -> torch.Tensor:
        """The pattern in pixel units, ``[C, out, out]``: ``delta`` (added after normalizing) times the network's std."""
        return self.delta * self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.resize(x)) + self.delta
