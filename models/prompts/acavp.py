"""ACAVP, affine + colour + additive visual prompting (Enomoto, NeurIPS 2025), for CNNs.

``x' = normalize(gain * warp(resize(x)) + (1 - warp(ones)) * P)``: the image (in ``[0, 1]``) is
resized to the network's input side (antialiased bilinear, on the device, as the watermark prompt
does), warped by 7 bounded affine scalars (by default shrunk to the top-left 73 % at the start,
leaving an L-shaped empty band), multiplied by a per-pixel, per-channel gain ``6 sigmoid(g)``
(1 at the start), and the additive prompt ``P`` (zero at the start, unbounded) fills the empty
region; then the network's normalization. Nothing is clamped. The transform itself lives in
:mod:`models.affine_colour`. One class for CNN and CLIP (on CLIP the image is CLIP's resized and
cropped one, and the gradient rule defaults to ACAVP's normalised one).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from common.options import Options, option
from models.affine_colour import PIVOTS, AffineColourAdditive
from models.patterns import initial_values
from models.prompts.base import CLIP, PromptSpec, VisualPrompt
from models.prompts.registry import register_prompt


@dataclass(frozen=True)
class AcavpOptions(Options):
    warp_pivot: str = option("corner", "the point the warp rotates and scales about: corner = the image's top-left corner, as ACAVP's reference"
                             " (an L-shaped empty band); centre = its middle (a frame)", choices=PIVOTS)  # fmt: skip


@register_prompt(
    "acavp",
    "ACAVP: the resized image affinely warped (7 bounded scalars), a per-pixel colour gain, a trainable pattern where the warp left it empty (Enomoto, 2025)",
)
class AffineColourAdditivePrompt(AffineColourAdditive, VisualPrompt):
    """Resize to ``out_size``, warp, gain, fill the empty band with ``prompt``, normalize.

    Takes images of any size (training views come already at ``out_size``); ``image_mask`` has no
    effect. ``--prompt-init`` starts the additive prompt (``zero``, the paper's, or ``randn``); the
    warp and gain always start at their documented values.

    ``pattern()`` differs from the additive prompts' (the transform is not additive): it is what
    the transform makes of a mid-grey image, in [0, 1] pixel units. The snapshot draws its change
    from that grey (``pattern() - 0.5``) centred at grey, so a darkening shows as such, never clipped.
    """

    OPTIONS = AcavpOptions
    GRADIENT_RULE = {CLIP: "normalised"}  # ACAVP's CLIP recipe; on CNNs the acavp_vp method sets it
    # the paper's training views: resize (+32), random crop and flip, then TrivialAugment
    DEFAULT_AUGMENT = "resize32_crop_flip+trivialaugment_wide"
    CROP_FLIP = "resize32_crop_flip"

    def __init__(self, spec: PromptSpec) -> None:
        c, s = spec.channels, spec.out_size
        start = initial_values((c, s, s), spec.init, spec.generator, self.RANDN_SCALE)
        super().__init__(s, c, (spec.options or AcavpOptions()).warp_pivot, prompt_init=start, spec=spec)

    def shown_pattern(self) -> torch.Tensor:
        return self.pattern() - 0.5

    def clipped_parameters(self) -> list[nn.Parameter]:
        return [self.affine, self.gain]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.transform(self.fit(x)))
