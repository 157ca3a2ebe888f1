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
factors zero, neither would ever move. ``--prompt-init randn`` draws both factors from ``N(0, 0.01^2)`` instead. Both come from the
prompt's own generator (:class:`models.prompts.base.PromptSpec`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from common.argtypes import positive_int
from common.options import Options, option
from models.patterns import LowRankPattern
from models.prompts.base import CLIP, PromptSpec, VisualPrompt
from models.prompts.registry import register_prompt


@dataclass(frozen=True)
class LowRankOptions(Options):
    rank: int = option(4, "rank of the pattern B @ A per channel", type=positive_int, metavar="R")


@register_prompt("lowrank", "LoR-VP's pattern of rank --rank per channel added to the whole resized image (Jin et al., 2025)")
class LowRankVisualPrompt(VisualPrompt):
    """Resize to ``out_size``, add the rank-``r`` pattern ``B @ A`` everywhere, normalize.

    Takes images of ``image_size`` or already of ``out_size``; ``spec.image_mask`` has no effect.
    One class for CNN and CLIP: on CLIP the pattern is added, in pixel units, to CLIP's resized and
    cropped image before its normalization, as on a CNN.
    """

    OPTIONS = LowRankOptions
    # CLIP's low-rank prompt added its pattern after the normalization until it became this class
    REVISION = {CLIP: {"lowrank_units": "pixel"}}
    DEFAULT_AUGMENT = "none"
    CROP_FLIP = "resize32_crop_flip"  # the resize-then-crop recipe of the full-image prompts

    def __init__(self, spec: PromptSpec) -> None:
        super().__init__(spec)
        self.low_rank = LowRankPattern(spec.channels, spec.out_size, self.options.rank, spec.init, spec.generator)

    @property
    def rank(self) -> int:
        return self.low_rank.rank

    @property
    def left(self) -> torch.nn.Parameter:
        """``B [C, out, r]``."""
        return self.low_rank.left

    @property
    def right(self) -> torch.nn.Parameter:
        """``A [C, r, out]``."""
        return self.low_rank.right

    def pattern(self) -> torch.Tensor:
        """The additive pattern ``B @ A`` in pixel units, ``[C, out, out]``."""
        return self.low_rank()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_size(x)
        return self.normalize(self.fit(x) + self.pattern())
