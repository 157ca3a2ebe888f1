"""Bahng et al.'s frame (2022) and AttrVR's resized-image frame (Cai et al., ICLR 2025): a trainable
border added to the normalized image.

* ``padding``: a frame of width ``--prompt-size`` added to the border of the image at the
  network's side (4 parameter blocks, as in Bahng et al.; 69,840 values for width 30 at 224).
* ``resize_padding``: the image taken at ``S - 2 * prompt_size`` (192 at 224 with width 16:
  :meth:`ResizePaddingPrompt.input_side`, so CLIP preprocesses it at that size), padded with zeros
  (the mean colour, after normalization) to ``S``, and the trainable frame added there; the image
  itself is never covered.

The frame is unconstrained (no sigmoid) and added after normalization, so ``pattern()`` is in
normalized units (``UNITS``). ``--prompt-init randn`` draws it from ``N(0, 1)``, as Bahng et al.'s
code. A CNN's images of another size are resized first (bilinear, antialiased); on CNN scripts the
name ``padding`` is ILM-VP's frame (``pad``), so only ``resize_padding`` is offered there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UserError
from models.patterns import initial_values
from models.prompts.base import PromptSizeOptions, PromptSpec, SizedPatternPrompt
from models.prompts.registry import register_prompt


@register_prompt(
    "padding",
    "Bahng et al.'s frame of width --prompt-size added to the border of the normalized image",
    aliases={"clip": ("pad",)},  # the CNN scripts' name for their frame prompt, stored as padding on CLIP
)
class PaddingPrompt(SizedPatternPrompt):
    """A trainable frame of width ``prompt_size`` added to the border of the image."""

    def __init__(self, spec: PromptSpec) -> None:
        super().__init__(spec)
        size, p = spec.out_size, self.prompt_size
        if not 0 < 2 * p < size:
            raise UserError(f"--prompt-size {p} must be positive and less than half the {size}px image")
        inner = size - 2 * p
        shapes = {"pad_up": (p, size), "pad_down": (p, size), "pad_left": (inner, p), "pad_right": (inner, p)}
        for name, shape in shapes.items():
            setattr(self, name, nn.Parameter(initial_values((spec.channels, *shape), spec.init, spec.generator, self.RANDN_SCALE)))

    def pattern(self) -> torch.Tensor:
        """The additive pattern ``[C, S, S]`` in normalized units: the frame, zero inside."""
        c, inner = self.pad_left.shape[0], self.pad_left.shape[1]
        centre = self.pad_left.new_zeros(c, inner, inner)
        middle = torch.cat([self.pad_left, centre, self.pad_right], dim=2)
        return torch.cat([self.pad_up, middle, self.pad_down], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.fit(x)) + self.pattern().to(x.dtype)


@register_prompt(
    "resize_padding",
    "AttrVR's frame: the image resized to the network's side - 2 x --prompt-size (192 at 224 and 16), zero-padded, a frame added there",
)
class ResizePaddingPrompt(PaddingPrompt):
    """The image, at ``S - 2 * prompt_size``, zero-padded to ``S`` inside a trainable frame."""

    @classmethod
    def input_side(cls, out_size: int, options: PromptSizeOptions | None) -> int:
        return out_size - 2 * (options or PromptSizeOptions()).prompt_size

    @property
    def input_size(self) -> int:
        """The side of the image this prompt puts inside its frame."""
        return self.out_size - 2 * self.prompt_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.prompt_size
        return F.pad(self.normalize(self.fit(x, self.input_size)), (p, p, p, p)) + self.pattern().to(x.dtype)
