"""Building blocks shared by the models: normalization and resizing of ``[0, 1]`` batches, float32
logits, the starts of additive patterns and of low-rank factors."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UserError


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as the source network was trained with."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("scale", 1.0 / std_t, persistent=False)
        self.register_buffer("shift", -torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) / std_t, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x, self.scale)


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


def full_precision(x: torch.Tensor):
    """A context in which ``x``'s device computes in float32 even inside an autocast region."""
    return torch.autocast(device_type=x.device.type, enabled=False)


class Float32Linear(nn.Linear):
    """A linear layer that computes in float32 even under autocast.

    Logits computed in bf16 are rounded to steps of 2^-7 of their size (0.125 near 25), so
    classes whose logits differ by less become exact ties and ``argmax`` picks the lowest index.
    The network body may run in reduced precision; its output layer runs through this, so
    predictions, mapping counts and the loss see float32 logits. Parameters and state-dict keys
    are those of ``nn.Linear``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with full_precision(x):
            return F.linear(x.float(), self.weight.float(), None if self.bias is None else self.bias.float())

    @classmethod
    def from_linear(cls, layer: nn.Linear) -> Float32Linear:
        """The same layer (its parameter objects shared, not copied) computing in float32."""
        new = cls(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
        new.weight, new.bias = layer.weight, layer.bias
        return new.train(layer.training)
PATTERN_RANDN_SCALE = 0.01  # init "randn" of the additive patterns: N(0, 0.01^2) per value, small next to the image
LOW_RANK_RANDN_SCALE = PATTERN_RANDN_SCALE  # init "randn": both factors N(0, 0.01^2)


def full_pattern(channels: int, size: int, init: str) -> torch.Tensor:
    """An additive ``[C, size, size]`` pattern's start: ``zero``, or ``randn`` (N(0, 0.01^2) each).

    Other values: :class:`UserError` (``--prompt-init`` is a flag)."""
    if init == "zero":
        return torch.zeros(channels, size, size)
    if init == "randn":
        return PATTERN_RANDN_SCALE * torch.randn(channels, size, size)
    raise UserError(f"unknown prompt init {init!r}; choose zero or randn")


def low_rank_factors(channels: int, size: int, rank: int, init: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``B [C, size, rank]`` and ``A [C, rank, size]`` of a low-rank pattern ``B @ A``.

    ``zero``: ``B = 0`` and each channel's ``A`` drawn as ``nn.Linear(size, rank)`` draws its weight
    (Kaiming-uniform, ``a = sqrt(5)``), LoRA's convention: the pattern starts at zero yet ``B``
    gets a gradient at once. ``randn``: both ``N(0, 0.01^2)``. Other values: ``ValueError``.
    """
    if init == "zero":
        right = torch.empty(channels, rank, size)
        for c in range(channels):
            nn.init.kaiming_uniform_(right[c], a=math.sqrt(5))
        return torch.zeros(channels, size, rank), right
    if init == "randn":
        return LOW_RANK_RANDN_SCALE * torch.randn(channels, size, rank), LOW_RANK_RANDN_SCALE * torch.randn(channels, rank, size)
    raise ValueError(f"unknown init {init!r}")
