"""The low-rank visual prompt of LoR-VP (Jin et al., ICLR 2025): a rank-``r`` pattern over the whole image.

``x' = normalize(resize(x) + B @ A)`` with ``B [C, out, r]`` and ``A [C, r, out]``: the image is
resized to the network's input (antialiased bilinear, on the device) and every pixel gets the
pattern ``B @ A``, a product of two thin matrices per channel, so its rank is at most ``r`` and it
costs ``C * 2 * out * r`` parameters (5,376 at 224 px and rank 4, against 150,528 for the
full-rank watermark of which it is the constrained form).

Initialisation: ``B`` starts at zero and ``A`` is drawn like a linear layer's weight
(Kaiming-uniform, ``a = sqrt(5)``): the convention of LoRA (Hu et al., ICLR 2022), whose
low-rank update LoR-VP transfers to the prompt. The first forward pass then sees the plain image
while the gradient reaching ``B`` (``dL/dP @ A^T``) is non-zero from the first step; were both
factors zero, neither would ever move. ``--prompt-init randn`` draws both factors from ``N(0, 0.01^2)`` instead.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from common.errors import UserError
from models.layers import Normalize, low_rank_factors, resize_square
from models.prompts.registry import PromptOptions, register_prompt


@register_prompt("lowrank")
class LowRankVisualPrompt(nn.Module):
    """Resize to ``out_size``, add the rank-``r`` pattern ``B @ A`` everywhere, normalize.

    Takes images of ``image_size`` or already of ``out_size``; ``image_mask`` has no effect.
    """

    OPTIONS = ("rank",)
    DEFAULT_AUGMENT = "none"
    CROP_FLIP = "resize32_crop_flip"  # the resize-then-crop recipe of the full-image prompts

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
        rank = (options or PromptOptions()).rank
        if not 1 <= rank <= out_size:
            raise UserError(f"--rank must be between 1 and the {out_size}px input, got {rank}")
        self.image_size = tuple(image_size)
        self.out_size, self.rank = out_size, rank
        if init not in ("zero", "randn"):
            raise UserError(f"unknown prompt init {init!r}; choose zero or randn")
        left, right = low_rank_factors(channels, out_size, rank, init)
        self.left = nn.Parameter(left)  # B
        self.right = nn.Parameter(right)  # A
        self.normalize = Normalize(mean, std)

    def pattern(self) -> torch.Tensor:
        """The additive pattern ``B @ A`` in pixel space, ``[C, out, out]``."""
        return torch.bmm(self.left, self.right)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) not in (self.image_size, (self.out_size, self.out_size)):
            raise ValueError(f"prompt built for {self.image_size} or {self.out_size}px images, got {tuple(x.shape[-2:])}")
        return self.normalize(resize_square(x, self.out_size) + self.pattern())
