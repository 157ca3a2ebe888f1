"""Training-batch crops and flips on the device, each sample drawn from its own stream.

The recipes (their names and the vocabulary of ``--augment``: :mod:`data.augment_recipes`):

* :func:`pad_crop_flip`, the CIFAR recipe: zero padding, a random crop back to the image's size
  and a horizontal flip with probability 1/2 (torchvision ``RandomCrop(size, padding)`` +
  ``RandomHorizontalFlip``).
* :func:`resize_crop_recipe` with margin 4, no flip: BLM's watermark views, the image resized to
  ``out + 4`` square (bilinear, antialiased) and a random ``out`` x ``out`` crop (``Resize(228)``
  + ``RandomCrop(224)`` for a 224 network); with margin 32 and a flip: SMM's recipe (Cai et al.,
  ICML 2024), ``Resize(out + 32)`` + ``RandomCrop(out)`` + ``RandomHorizontalFlip``.
* :class:`RandomResizedCropFlip`, the ImageNet recipe: a random resized crop at the batch's own
  resolution and a horizontal flip (``RandomResizedCrop`` + ``RandomHorizontalFlip``).

Crops and flips work on whole float batches at once; every random number comes from the batch's
:class:`~data.augment_draws.AugmentDraws`, a fixed count per sample, so a sample's view depends on
(seed, epoch, its dataset index) alone. A builder takes the image size and the network's input
size ``out_size`` (used by the recipes that resize).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from data.augment_draws import AugmentDraws, randint_from

Augment = Callable[[torch.Tensor, AugmentDraws], torch.Tensor]

CROP_PADDING_PER_32 = 4  # 4 pixels on 32x32 CIFAR; scaled with the image side elsewhere
RESIZE_MARGIN_BLM = 4  # BLM's watermark views: Resize(224 + 4), then RandomCrop(224)
RESIZE_MARGIN_SMM = 32  # SMM resizes training images to the input size + 32 before cropping


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


def crop_flip_draws(draws: AugmentDraws, margin: int, flip: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per sample: a crop offset ``(top, left)`` uniform over ``0 .. margin`` each (every placement,
    as ``RandomCrop``), then a flip with probability 1/2 (if ``flip``); 3 uniforms (2 without flip)."""
    u = draws.uniform(3 if flip else 2)
    offsets = randint_from(u[:, :2], margin + 1)
    return offsets, (u[:, 2] < 0.5) if flip else None


def crop_flip(x: torch.Tensor, draws: AugmentDraws, h: int, w: int, flip: bool = True) -> torch.Tensor:
    """An ``h x w`` crop of every image of ``x`` (``[B, C, H, W]``) at a random offset, mirrored
    horizontally with probability 1/2 (unless ``flip`` is False)."""
    _, _, height, width = x.shape
    if height - h != width - w:
        raise ValueError(f"crop {h}x{w} of {height}x{width} images: the margins must be equal")
    offsets, flips = crop_flip_draws(draws, height - h, flip)
    return crops_at(x, offsets, (h, w), flips)


def random_crop_flip(x: torch.Tensor, draws: AugmentDraws, padding: int) -> torch.Tensor:
    """Pad every image by ``padding`` zeros, crop back to its size at a random offset, flip half."""
    h, w = x.shape[-2:]
    return crop_flip(F.pad(x, (padding, padding, padding, padding)), draws, h, w)


def pad_crop_flip(image_size: tuple[int, int], out_size: int | None = None) -> Augment:
    """The CIFAR recipe as an ``Experiment.train_augment`` callable for images of ``image_size``."""
    padding = crop_padding_for(image_size)

    def augment(x: torch.Tensor, draws: AugmentDraws) -> torch.Tensor:
        return random_crop_flip(x, draws, padding)

    return augment


def random_resize_crop(x: torch.Tensor, draws: AugmentDraws, out_size: int, margin: int, flip: bool = False) -> torch.Tensor:
    """Resize every image to ``out + margin`` square (bilinear, antialiased) and take a random
    ``out`` x ``out`` crop of each, mirrored with probability 1/2 if ``flip``."""
    big = out_size + margin
    if tuple(x.shape[-2:]) != (big, big):
        x = F.interpolate(x, size=(big, big), mode="bilinear", align_corners=False, antialias=True)
    return crop_flip(x, draws, out_size, out_size, flip=flip)


def resize_crop_recipe(margin: int, flip: bool) -> Callable[..., Augment]:
    """A builder of the resize-then-crop recipe: views of ``out_size`` (the network's input; default
    the image's own side) cropped from the image resized to ``out_size + margin``."""

    def build(image_size: tuple[int, int], out_size: int | None = None) -> Augment:
        out = out_size or min(image_size)

        def augment(x: torch.Tensor, draws: AugmentDraws) -> torch.Tensor:
            return random_resize_crop(x, draws, out, margin, flip=flip)

        return augment

    return build


def random_resized_crop_boxes(
    u: torch.Tensor,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Integer crop boxes ``[B, 4]`` as ``(top, left, h, w)``, one per row of uniforms ``u``
    (``[B, 2 * attempts + 2]``), drawn like torchvision's ``RandomResizedCrop.get_params``: up to
    ``attempts`` draws of area fraction and log aspect ratio, the first that fits the image wins;
    otherwise a centre crop with the ratio clamped. The last two uniforms place the box."""
    attempts = (u.shape[1] - 2) // 2
    area = height * width
    target_area = area * (scale[0] + u[:, :attempts] * (scale[1] - scale[0]))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + u[:, attempts : 2 * attempts] * (log_hi - log_lo))
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
    top = torch.where(any_fit, randint_from(u[:, -2], height - h + 1), (height - h) // 2)
    left = torch.where(any_fit, randint_from(u[:, -1], width - w + 1), (width - w) // 2)
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
    flip with probability 1/2, per image; 10 attempts as torchvision, 23 uniforms per sample."""

    ATTEMPTS = 10

    def __init__(self, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> None:
        self.scale, self.ratio = scale, ratio

    def __call__(self, x: torch.Tensor, draws: AugmentDraws) -> torch.Tensor:
        _, _, height, width = x.shape
        u = draws.uniform(2 * self.ATTEMPTS + 3)
        boxes = random_resized_crop_boxes(u[:, :-1], height, width, self.scale, self.ratio)
        return resized_crop(x, boxes, u[:, -1] < 0.5)


def resized_crop_flip(image_size: tuple[int, int], out_size: int | None = None) -> Augment:
    """The ImageNet recipe as an ``Experiment.train_augment`` callable (any image size)."""
    return RandomResizedCropFlip()


def compose(*augments: Augment | None) -> Augment | None:
    """The augmentations applied in order, each continuing the same per-sample streams (None: none)."""
    steps = [a for a in augments if a is not None]
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def augment(x: torch.Tensor, draws: AugmentDraws) -> torch.Tensor:
        for step in steps:
            x = step(x, draws)
        return x

    return augment
