"""Building blocks shared by the models: normalization and resizing of ``[0, 1]`` batches, float32
logits. What the prompts share beyond these is in :mod:`models.patterns`."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


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
