"""The watermarking visual prompt: resize the image to the network's input, add a full-image pattern.

``x' = normalize(resize(x) + delta)``: the image (in ``[0, 1]``) is resized bilinearly to
``out_size`` x ``out_size`` on the device, a trainable pattern ``delta [C, out, out]`` is added to
every pixel, and the network's normalization comes after. ``delta`` is unconstrained and there
is no clamp, so the prompt is linear in the image: adding ``delta`` in pixel space before
normalization equals adding ``delta / std`` to the normalized image, the additive prompt of
Bahng et al. (2022). ``delta`` starts at zero, so the first forward pass sees the plain resized
image. This is the "watermarking" input transform that the BLM paper (Cai et al., NeurIPS 2024)
pairs with its mappings, next to padding.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from common.errors import UserError
from models.layers import Normalize, resize_square
from models.prompts.registry import PromptOptions, register_prompt

RANDN_SCALE = 0.01  # --prompt-init randn: N(0, 0.01^2) per pixel, small next to the [0, 1] image


@register_prompt("watermark")
class WatermarkVisualPrompt(nn.Module):
    """Resize to ``out_size``, add ``delta`` everywhere, normalize (see the module docstring).

    ``image_mask`` (the pixels of the image a pad prompt may write) is accepted for a uniform
    constructor and has no effect: the watermark writes every pixel.
    """

    OPTIONS: tuple[str, ...] = ()
    DEFAULT_AUGMENT = "crop_flip"  # BLM trains the watermark with random crops and flips
    CROP_FLIP = "pad_crop_flip"

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
        self.image_size = tuple(image_size)
        self.out_size = out_size
        if init == "zero":
            delta = torch.zeros(channels, out_size, out_size)
        elif init == "randn":
            delta = RANDN_SCALE * torch.randn(channels, out_size, out_size)
        else:
            raise UserError(f"unknown prompt init {init!r}; choose zero or randn")
        self.delta = nn.Parameter(delta)
        self.normalize = Normalize(mean, std)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        return resize_square(x, self.out_size)

    def pattern(self) -> torch.Tensor:
        """The additive pattern in pixel space, ``[C, out, out]``."""
        return self.delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"prompt built for {self.image_size} images, got {tuple(x.shape[-2:])}")
        return self.normalize(self.resize(x) + self.delta)

