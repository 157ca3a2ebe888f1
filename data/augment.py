"""Training-batch augmentations on the device, each drawn from the engine's per-epoch generator.

The recipes, one name each (:data:`AUGMENTATIONS`):

* ``pad_crop_flip``, the CIFAR recipe: zero padding, a random crop back to the image's size and a
  horizontal flip with probability 1/2 (torchvision ``RandomCrop(size, padding)`` +
  ``RandomHorizontalFlip``); ``--augment crop_flip`` of the pad prompt.
* ``resize_crop``, BLM's watermark recipe: the image resized to ``out + 4`` square (bilinear,
  antialiased) and a random ``out`` x ``out`` crop (``Resize(228)`` + ``RandomCrop(224)`` for a
  224 network), no flip; ``--augment crop_flip`` of the watermark prompt.
* ``smm_crop_flip``, SMM's recipe (Cai et al., ICML 2024): resize to the network's input size
  plus 32, a random crop of the input size and a horizontal flip (``Resize(out + 32)`` +
  ``RandomCrop(out)`` + ``RandomHorizontalFlip``); ``--augment crop_flip`` of the smm and lowrank
  prompts. Its output is at the network's input size.
* ``resized_crop_flip``, the ImageNet recipe: a random resized crop at the batch's own resolution
  and a horizontal flip (``RandomResizedCrop`` + ``RandomHorizontalFlip``); linear probing's and
  fine-tuning's ``--train-augment crop_flip``.
* ``trivialaugment``: TrivialAugment (Müller & Hutter, ICCV 2021) with the "wide" op set and the
  31 magnitude bins of torchvision's ``TrivialAugmentWide``: one op and one magnitude per image.
  The prompts' ``--augment trivialaugment`` applies it before their crop-and-flip recipe, as ACAVP
  (NeurIPS 2025) pairs it with random crops and flips.

The crops and flips work on whole float batches at once; TrivialAugment applies
``torchvision.transforms.v2.functional`` ops image by image (each image its own op). Random draws
come from the CPU generator the engine passes per epoch, so a resumed run replays them exactly. A
builder takes the image size and the network's input size ``out_size`` (used by the recipes that
resize).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

CROP_PADDING_PER_32 = 4  # 4 pixels on 32x32 CIFAR; scaled with the image side elsewhere
RESIZE_CROP_MARGIN = 4  # BLM's watermark views: Resize(224 + 4), then RandomCrop(224)


def crop_padding_for(image_size: tuple[int, int]) -> int:
    """Zero padding of the random crop: 4 pixels per 32 of the shorter side, at least 1."""
    return max(1, round(CROP_PADDING_PER_32 * min(image_size) / 32))


def crops_at(x: torch.Tensor, offsets: torch.Tensor, size: tuple[int, int], flips: torch.Tensor | None = None) -> torch.Tensor:
    """The ``size`` crop of each image of ``x`` whose top-left corner is ``offsets[b] = (top, left)``,
    mirrored where ``flips[b]``, gathered for the whole batch at once."""
    b = x.shape[0]
    h, w = size
    offsets = offsets.to(x.device)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # [B, h]
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # [B, w]
    if flips is not None:
        cols = torch.where(flips.to(x.device)[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    crops = x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [B, h, w, C]
    return crops.permute(0, 3, 1, 2).contiguous()


def crop_flip(x: torch.Tensor, generator: torch.Generator, h: int, w: int, flip: bool = True) -> torch.Tensor:
    """An ``h x w`` crop of every image at a random offset, mirrored horizontally with probability 1/2
    (unless ``flip`` is False).

    ``x`` is ``[B, C, H, W]``; offsets (uniform over every placement, as ``RandomCrop``) and flips
    are drawn per sample from ``generator`` (CPU), offsets first.
    """
    b, _, height, width = x.shape
    if height - h != width - w:
        raise ValueError(f"crop {h}x{w} of {height}x{width} images: the margins must be equal")
    offsets = torch.randint(0, height - h + 1, (b, 2), generator=generator)
    flips = torch.rand(b, generator=generator) < 0.5 if flip else None
    return crops_at(x, offsets, (h, w), flips)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int) -> torch.Tensor:
    """Pad every image by ``padding`` zeros, crop back to its size at a random offset, flip half."""
    h, w = x.shape[-2:]
    return crop_flip(F.pad(x, (padding, padding, padding, padding)), generator, h, w)


def pad_crop_flip(image_size: tuple[int, int], out_size: int | None = None) -> Augment:
    """The CIFAR recipe as an ``Experiment.train_augment`` callable for images of ``image_size``."""
    padding = crop_padding_for(image_size)

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_crop_flip(x, generator, padding)

    return augment


def random_resize_crop(
    x: torch.Tensor, generator: torch.Generator, out_size: int, margin: int = RESIZE_CROP_MARGIN, flip: bool = False
) -> torch.Tensor:
    """Resize every image to ``out + margin`` square (bilinear, antialiased) and take a random
    ``out`` x ``out`` crop of each, mirrored with probability 1/2 if ``flip``; drawn per sample from
    ``generator`` (CPU)."""
    big = out_size + margin
    if tuple(x.shape[-2:]) != (big, big):
        x = F.interpolate(x, size=(big, big), mode="bilinear", align_corners=False, antialias=True)
    return crop_flip(x, generator, out_size, out_size, flip=flip)


def resize_crop(image_size: tuple[int, int], out_size: int | None = None) -> Augment:
    """BLM's watermark recipe as an ``Experiment.train_augment`` callable: views of ``out_size``
    (the network's input; default the image's own side) cropped from the image resized to ``out + 4``."""
    out = out_size or min(image_size)

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_resize_crop(x, generator, out)

    return augment


SMM_RESIZE_MARGIN = 32  # SMM resizes training images to the input size + 32 before cropping


def smm_crop_flip(image_size: tuple[int, int], out_size: int | None = None) -> Augment:
    """SMM's recipe: resize to ``out_size + 32`` (antialiased bilinear), random ``out_size`` crop, flip."""
    if out_size is None:
        raise ValueError("smm_crop_flip needs the network's input size")

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_resize_crop(x, generator, out_size, SMM_RESIZE_MARGIN, flip=True)

    return augment


def random_resized_crop_boxes(
    batch: int,
    height: int,
    width: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> torch.Tensor:
    """Integer crop boxes ``[B, 4]`` as ``(top, left, h, w)``, one per image, drawn like torchvision's
    ``RandomResizedCrop.get_params``: up to ``attempts`` draws of area fraction and log aspect
    ratio, the first that fits the image wins; otherwise a centre crop with the ratio clamped."""
    area = height * width
    target_area = area * torch.empty(batch, attempts).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = torch.empty(batch, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_ratio)
    w = torch.round(torch.sqrt(target_area * aspect)).long()
    h = torch.round(torch.sqrt(target_area / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(fits.int(), dim=1, keepdim=True)  # first fitting attempt (0 when none fits)
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
    any_fit = fits.any(dim=1)
    # fallback: the whole image cropped to the nearest allowed aspect ratio, centred
    in_ratio = width / height
    if in_ratio < min(ratio):
        fb_w, fb_h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fb_h, fb_w = height, int(round(height * max(ratio)))
    else:
        fb_w, fb_h = width, height
    h = torch.where(any_fit, h, torch.full_like(h, fb_h))
    w = torch.where(any_fit, w, torch.full_like(w, fb_w))
    u_top, u_left = torch.rand(batch, generator=generator), torch.rand(batch, generator=generator)
    top = torch.where(any_fit, (u_top * (height - h + 1)).long().clamp(max=height - h), (height - h) // 2)
    left = torch.where(any_fit, (u_left * (width - w + 1)).long().clamp(max=width - w), (width - w) // 2)
    return torch.stack([top, left, h, w], dim=1)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Crop each image of ``x`` to its box and resize it back to the batch's size, bilinearly, in one
    ``grid_sample``; ``flip[b]`` mirrors image ``b`` horizontally. Equals cropping then resizing
    with ``F.interpolate(..., mode="bilinear", align_corners=False)`` (a box never exceeds the
    image, so this only ever magnifies and needs no antialiasing)."""
    n, _, height, width = x.shape
    top, left, h, w = boxes.to(x.device, x.dtype).unbind(1)
    sx, sy = w / width, h / height
    cx, cy = (2 * left + w) / width - 1, (2 * top + h) / height - 1
    if flip is not None:
        sx = torch.where(flip.to(x.device), -sx, sx)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, cx], 1), torch.stack([zero, sy, cy], 1)], 1)
    grid = F.affine_grid(theta, [n, x.shape[1], height, width], align_corners=False)
    # clamp to the box's outer pixel centres, as resizing the cropped image clamps at its border
    lo = torch.stack([(2 * left + 1) / width, (2 * top + 1) / height], 1) - 1
    hi = torch.stack([(2 * (left + w) - 1) / width, (2 * (top + h) - 1) / height], 1) - 1
    grid = torch.maximum(torch.minimum(grid, hi[:, None, None, :]), lo[:, None, None, :])
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class RandomResizedCropFlip:
    """Training augmentation: random resized crop (at the batch's own resolution) and a horizontal
    flip with probability 1/2, per image; every draw comes from the given generator."""

    def __init__(self, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> None:
        self.scale, self.ratio = scale, ratio

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, height, width = x.shape
        boxes = random_resized_crop_boxes(n, height, width, generator, self.scale, self.ratio)
        flip = torch.rand(n, generator=generator) < 0.5
        return resized_crop(x, boxes, flip)


def resized_crop_flip(image_size: tuple[int, int], out_size: int | None = None) -> Augment:
    """The ImageNet recipe as an ``Experiment.train_augment`` callable (any image size)."""
    return RandomResizedCropFlip()


# ---------------------------------------------------------------------------------------------
# TrivialAugment

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

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        out = x.clone()
        for i, (name, magnitude) in enumerate(draw_trivialaugment(x.shape[0], generator)):
            if name != "Identity":
                out[i : i + 1] = apply_trivialaugment_op(x[i : i + 1], name, magnitude)
        return out

    return augment


def compose(*augments: Augment | None) -> Augment | None:
    """The augmentations applied in order, each drawing from the same generator (None: none)."""
    steps = [a for a in augments if a is not None]
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for step in steps:
            x = step(x, generator)
        return x

    return augment


# name -> builder(image_size, out_size) -> augment callable; None: no augmentation. ``out_size``
# is the network's input size (what the prompt resizes to), needed by recipes that resize.
AUGMENTATIONS: dict[str, Callable[..., Augment] | None] = {
    "none": None,
    "pad_crop_flip": pad_crop_flip,
    "smm_crop_flip": smm_crop_flip,
    "resized_crop_flip": resized_crop_flip,
    "resize_crop": resize_crop,
    "trivialaugment": trivialaugment,
}
# --train-augment's name for the ImageNet recipe
ALIASES = {"crop_flip": "resized_crop_flip"}


def build_augment(name: str, image_size: tuple[int, int], out_size: int | None = None) -> Augment | None:
    """The augmentation registered as ``name`` (or an alias) for images of ``image_size`` feeding
    a network whose input side is ``out_size``."""
    builder = AUGMENTATIONS[ALIASES.get(name, name)]
    return None if builder is None else builder(image_size, out_size)
