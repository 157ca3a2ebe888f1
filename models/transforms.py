"""Input pipelines for the methods that feed plain images to a network (linear probing, fine-tuning).

Both run on the device on whole batches of ``[0, 1]`` images: ``ResizeNormalize`` is the
deterministic pipeline (training and evaluation), ``RandomResizedCropFlip`` the training-only
augmentation, drawn from the generator the engine passes so a resumed run replays it exactly.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.prompts import Normalize


def resize_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, antialiased resize of a ``[B, C, H, W]`` batch to ``size`` x ``size`` (no-op if already)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class ResizeNormalize(nn.Module):
    """Resize to ``size`` x ``size`` (bilinear, antialiased) and normalize with the network's statistics."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.size = size
        self.normalize = Normalize(mean, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(resize_square(x, self.size))


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


AUGMENTATIONS = {"none": None, "crop_flip": RandomResizedCropFlip}
