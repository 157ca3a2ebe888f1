"""Training-set augmentation on the device, driven by the engine's per-epoch generator.

``random_crop_flip`` is the CIFAR recipe (torchvision ``RandomCrop(size, padding)`` with zero
fill, then ``RandomHorizontalFlip(0.5)``) applied to a whole float batch at once. Random draws
come from the CPU generator the engine passes per epoch, so a resumed run replays them exactly.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

CROP_PADDING_PER_32 = 4  # 4 pixels on 32x32 CIFAR; scaled with the image side elsewhere


def crop_padding_for(image_size: tuple[int, int]) -> int:
    """Zero padding of the random crop: 4 pixels per 32 of the shorter side, at least 1."""
    return max(1, round(CROP_PADDING_PER_32 * min(image_size) / 32))


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int) -> torch.Tensor:
    """Pad every image by ``padding`` zeros, crop back to its size at a random offset, flip half.

    ``x`` is ``[B, C, H, W]``; offsets and flips are drawn per sample from ``generator`` (CPU).
    """
    b, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator).to(x.device)
    flips = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # [B, H]
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # [B, W]
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    crops = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return crops.permute(0, 3, 1, 2).contiguous()


def crop_flip_augment(image_size: tuple[int, int]) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The ``Experiment.train_augment`` callable for images of ``image_size``."""
    padding = crop_padding_for(image_size)

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_crop_flip(x, generator, padding)

    return augment
