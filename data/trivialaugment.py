"""TrivialAugment (Müller & Hutter, ICCV 2021) with the "wide" op set of torchvision's ``TrivialAugmentWide``.

One op and one magnitude (of 31 bins) per image, drawn from that image's own generator in
torchvision's order, so an image gets exactly what ``TrivialAugmentWide`` gives it from the same
random stream. The ops are ``torchvision.transforms.v2.functional`` calls, image by image.
"""
from __future__ import annotations

import math

import torch

from data.augment import Augment
from data.augment_draws import AugmentDraws

TRIVIALAUGMENT_BINS = 31
# The "wide" op set: name -> (magnitude of each bin, or None for ops without one; signed: the
# magnitude is negated with probability 1/2). Bins as torchvision's TrivialAugmentWide; Solarize's
# threshold is a fraction of the maximum, so it reads the same for [0, 1] floats and uint8.
TRIVIALAUGMENT_OPS: dict[str, tuple[torch.Tensor | None, bool]] = {
    "Identity": (None, False),
    "ShearX": (torch.linspace(0.0, 0.99, TRIVIALAUGMENT_BINS), True),
    "ShearY": (torch.linspace(0.0, 0.99, TRIVIALAUGMENT_BINS), True),
    "TranslateX": (torch.linspace(0.0, 32.0, TRIVIALAUGMENT_BINS), True),
    "TranslateY": (torch.linspace(0.0, 32.0, TRIVIALAUGMENT_BINS), True),
    "Rotate": (torch.linspace(0.0, 135.0, TRIVIALAUGMENT_BINS), True),
    "Brightness": (torch.linspace(0.0, 0.99, TRIVIALAUGMENT_BINS), True),
    "Color": (torch.linspace(0.0, 0.99, TRIVIALAUGMENT_BINS), True),
    "Contrast": (torch.linspace(0.0, 0.99, TRIVIALAUGMENT_BINS), True),
    "Sharpness": (torch.linspace(0.0, 0.99, TRIVIALAUGMENT_BINS), True),
    "Posterize": ((8 - torch.arange(TRIVIALAUGMENT_BINS) / ((TRIVIALAUGMENT_BINS - 1) / 6)).round().int(), False),
    "Solarize": (torch.linspace(1.0, 0.0, TRIVIALAUGMENT_BINS), False),
    "AutoContrast": (None, False),
    "Equalize": (None, False),
}


def draw_trivialaugment(n: int, generator: torch.Generator) -> list[tuple[str, float]]:
    """``(op, magnitude)`` for each of ``n`` images, drawn in torchvision's order (op; then the bin,
    if the op has magnitudes; then the sign, if signed), so image ``i`` gets what the ``i``-th call
    of ``TrivialAugmentWide`` would draw from the same random stream."""
    names = list(TRIVIALAUGMENT_OPS)
    draws = []
    for _ in range(n):
        name = names[int(torch.randint(len(names), (), generator=generator))]
        magnitudes, signed = TRIVIALAUGMENT_OPS[name]
        magnitude = 0.0
        if magnitudes is not None:
            magnitude = float(magnitudes[int(torch.randint(TRIVIALAUGMENT_BINS, (), generator=generator))])
            if signed and torch.rand((), generator=generator) <= 0.5:
                magnitude = -magnitude
        draws.append((name, magnitude))
    return draws


def apply_trivialaugment_op(image: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    """One TrivialAugment op on ``[..., C, H, W]`` images in ``[0, 1]`` (nearest interpolation, black fill)."""
    import torchvision.transforms.v2.functional as TF  # noqa: N812 (torchvision's own name); here: the flags parse without it
    if name == "Identity":
        return image
    if name in ("ShearX", "ShearY"):  # shear angle atan(m), about the top-left corner
        angle = math.degrees(math.atan(magnitude))
        shear = [angle, 0.0] if name == "ShearX" else [0.0, angle]
        return TF.affine(image, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, center=[0, 0])
    if name in ("TranslateX", "TranslateY"):
        shift = [int(magnitude), 0] if name == "TranslateX" else [0, int(magnitude)]
        return TF.affine(image, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0])
    if name == "Rotate":
        return TF.rotate(image, angle=magnitude)
    if name == "Brightness":
        return TF.adjust_brightness(image, 1.0 + magnitude)
    if name == "Color":
        return TF.adjust_saturation(image, 1.0 + magnitude)
    if name == "Contrast":
        return TF.adjust_contrast(image, 1.0 + magnitude)
    if name == "Sharpness":
        return TF.adjust_sharpness(image, 1.0 + magnitude)
    if name == "Posterize":
        return TF.posterize(image, int(magnitude))
    if name == "Solarize":
        return TF.solarize(image, magnitude)
    if name == "AutoContrast":
        return TF.autocontrast(image)
    if name == "Equalize":
        return TF.equalize(image)
    raise ValueError(f"unknown TrivialAugment op {name!r}")


def trivialaugment(image_size: tuple[int, int] | None = None, out_size: int | None = None) -> Augment:
    """TrivialAugment (wide) as an ``Experiment.train_augment`` callable: one op per image."""

    def augment(x: torch.Tensor, draws: AugmentDraws) -> torch.Tensor:
        out = x.clone()
        for i, generator in enumerate(draws.generators()):
            (name, magnitude), = draw_trivialaugment(1, generator)
            if name != "Identity":
                out[i : i + 1] = apply_trivialaugment_op(x[i : i + 1], name, magnitude)
        return out

    return augment
