"""ACAVP, affine + colour + additive visual prompting (Enomoto, NeurIPS 2025), for CNNs.

``x' = normalize(gain * warp(resize(x)) + (1 - warp(ones)) * P)``: the image (in ``[0, 1]``) is
resized to the network's input side (antialiased bilinear, on the device, as the watermark prompt
does), warped by 7 bounded affine scalars (by default shrunk to the top-left 73 % at the start,
leaving an L-shaped empty band), multiplied by a per-pixel, per-channel gain ``6 sigmoid(g)``
(1 at the start), and the additive prompt ``P`` (zero at the start, unbounded) fills the empty
region; then the network's normalization. Nothing is clamped. The transform itself lives in
:mod:`models.affine_colour`, shared with the CLIP prompt.

The module keeps to the CNN prompts' constructor and class attributes so it can move onto a
shared prompt base unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from models.affine_colour import AffineColourAdditive
from models.layers import Normalize, full_pattern, resize_square
from models.prompts.registry import PromptOptions, register_prompt


@register_prompt(
    "acavp",
    "ACAVP: the resized image affinely warped (7 bounded scalars), a per-pixel colour gain, a trainable pattern where the warp left it empty (Enomoto, 2025)",
)
class AffineColourAdditivePrompt(AffineColourAdditive):
    """Resize to ``out_size``, warp, gain, fill the empty band with ``prompt``, normalize.

    Takes images of any size (training views come already at ``out_size``). ``image_mask`` is
    accepted for a uniform constructor and has no effect. ``init`` starts the additive prompt:
    ``zero`` (the paper's) or ``randn`` (N(0, 0.01^2)); the warp and gain always start at their
    documented values. ``pattern()`` is the transform of a mid-grey image in [0, 1] pixel units.
    """

    OPTIONS = ("warp_pivot",)
    DEFAULT_AUGMENT = "trivialaugment"  # ACAVP trains with TrivialAugment after resize, crop and flip
    CROP_FLIP = "smm_crop_flip"  # resize to input + 32, random crop of the input size, flip

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
        pivot = (options or PromptOptions()).warp_pivot
        super().__init__(out_size, channels, pivot, prompt_init=full_pattern(channels, out_size, init))
        self.image_size = tuple(image_size)
        self.out_size = out_size
        self.normalize = Normalize(mean, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.transform(resize_square(x, self.out_size)))
