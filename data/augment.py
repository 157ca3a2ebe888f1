"""Training-batch augmentations on the device, each drawn from the engine's per-epoch generator.

Three recipes, one name each (:data:`AUGMENTATIONS`):

* ``pad_crop_flip``, the CIFAR recipe: zero padding, a random crop back to the image's size and a
  horizontal flip with probability 1/2 (torchvision ``RandomCrop(size, padding)`` +
  ``RandomHorizontalFlip``); the padding prompt's ``--augment``.
* ``resized_crop_flip``, the ImageNet recipe: a random resized crop at the batch's own resolution
  and a horizontal flip (``RandomResizedCrop`` + ``RandomHorizontalFlip``); linear probing's and
  fine-tuning's ``--train-augment crop_flip``.
* ``resize_crop``, BLM's watermark recipe: the image resized to ``out + 4`` square (bilinear,
  antialiased) and a random ``out`` x ``out`` crop (``Resize(228)`` + ``RandomCrop(224)`` for a
  224 network), no flip; the watermark prompt's ``--augment``.

All work on whole float batches at once. Random draws come from the CPU generator the engine
passes per epoch, so a resumed run replays them exactly. A builder takes the image size and the
network's input size ``out_size`` (used by ``resize_crop`` only).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

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


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int) -> torch.Tensor:
    """Pad every image by ``padding`` zeros, crop back to its size at a random offset, flip half.

    ``x`` is ``[B, C, H, W]``; offsets and flips are drawn per sample from ``generator`` (CPU).
    """
    b, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator)
    flips = torch.rand(b, generator=generator) < 0.5
    return crops_at(F.pad(x, (padding, padding, padding, padding)), offsets, (h, w), flips)


def pad_crop_flip(image_size: tuple[int, int], out_size: int | None = None) -> Augment:
    """The CIFAR recipe as an ``Experiment.train_augment`` callable for images of ``image_size``."""
    padding = crop_padding_for(image_size)

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_crop_flip(x, generator, padding)

    return augment


def random_resize_crop(x: torch.Tensor, generator: torch.Generator, out_size: int, margin: int = RESIZE_CROP_MARGIN) -> torch.Tensor:
    """Resize every image to ``out + margin`` square (bilinear, antialiased) and take a random
    ``out`` x ``out`` crop of each; offsets are drawn per sample from ``generator`` (CPU)."""
    big = out_size + margin
    if tuple(x.shape[-2:]) != (big, big):
        x = F.interpolate(x, size=(big, big), mode="bilinear", align_corners=False, antialias=True)
    offsets = torch.randint(0, margin + 1, (x.shape[0], 2), generator=generator)
    return crops_at(x, offsets, (out_size, out_size))


def resize_crop(image_size: tuple[int, int], out_size: int | None = None) -> Augment:
    """BLM's watermark recipe as an ``Experiment.train_augment`` callable: views of ``out_size``
    (the network's input; default the image's own side) cropped from the image resized to ``out + 4``."""
    out = out_size or min(image_size)

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_resize_crop(x, generator, out)

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


# name -> builder(image_size, out_size) -> augment callable; None: no augmentation
AUGMENTATIONS: dict[str, Callable[[tuple[int, int], int | None], Augment] | None] = {
    "none": None,
    "pad_crop_flip": pad_crop_flip,
    "resized_crop_flip": resized_crop_flip,
    "resize_crop": resize_crop,
}
# --train-augment's name for the ImageNet recipe
ALIASES = {"crop_flip": "resized_crop_flip"}


def build_augment(name: str, image_size: tuple[int, int], out_size: int | None = None) -> Augment | None:
    """The augmentation registered as ``name`` (or an alias) for images of ``image_size`` feeding
    a network whose input side is ``out_size``."""
    builder = AUGMENTATIONS[ALIASES.get(name, name)]
    return None if builder is None else builder(image_size, out_size)
