"""ACAVP's input transform (Enomoto, NeurIPS 2025): affine warp, colour gain, additive prompt in the empty region.

The ``acavp`` prompt (:mod:`models.prompts.acavp`, one class for CNN and CLIP) subclasses
:class:`AffineColourAdditive`. On an image
``x`` in ``[0, 1]`` already at the network's side ``S``::

    w = warp(x)                       # 7 bounded affine scalars, bilinear, zero padding
    y = 6 * sigmoid(g) * w            # per-pixel, per-channel gain, in [0, 1] space
    y = y + (1 - warp(ones)) * P      # the additive prompt where the warp left the canvas empty

Nothing is clamped; the caller normalizes ``y`` with the network's statistics.

The affine map (our reading of the paper's description, written without its code): the image is
moved by ``p_out = M p_in + t`` with ``M = R(rotation) @ Shear(shear_x, shear_y) @ diag(scale_x,
scale_y)``, ``R`` a rotation, ``Shear = [[1, tan shear_x], [tan shear_y, 1]]`` and ``p`` measured
from the pivot. The bounds: rotation ``0.1 tanh(a)`` rad, scales ``sigmoid(a)`` (so in (0, 1):
the image only ever shrinks), shears ``0.1 tanh(a)`` rad, translations ``0.05 S tanh(a)`` pixels.
``det M >= cos(0.1)^2 (1 - tan(0.1)^2) * scale_x * scale_y > 0``, so ``M`` is always invertible and
the sampling grid is ``p_in = M^-1 (p_out - t)``.

The pivot is the top-left corner of the image by default (``pivot="corner"``; the corner of the
top-left pixel, the origin of torchvision's ``center=[0, 0]``), as the reference rotates and
scales about the top-left: at the start (scale ``sigmoid(1) = 0.731``, everything else 0) the
image fills the top-left 73 % of each side and an L-shaped band along the right and bottom edges
is empty. ``pivot="centre"`` scales about the middle instead (a frame of empty canvas all round).

The empty region is ``1 - warp(ones)``: the same bilinear warp applied to an all-ones image, so it
is 1 where the warp sampled only padding, 0 where it sampled only the image, and in between on
the one-pixel seam. It depends on the geometry only (a black pixel of the image is not "empty",
which a test for exact zeros in the warped image would get wrong) and passes gradient to the
affine parameters through the seam, like the image term does.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UserError

ROTATION_BOUND = 0.1  # rad: rotation = 0.1 tanh(a)
SHEAR_BOUND = 0.1  # rad: shear = 0.1 tanh(a)
TRANSLATION_FRACTION = 0.05  # of the side: translation = 0.05 S tanh(a) pixels
GAIN_MAX = 6.0  # gain = 6 sigmoid(g), in (0, 6)
# "scales sigmoid(a) per axis (init 0.73)": 0.73 is the scale, sigmoid(1) = 0.7311 rounded (a raw
# 0.73 would give 0.675, not the "top-left ~73 %" the description names); the raw value starts at 1
SCALE_INIT_RAW = 1.0
# 6 sigmoid(-log 5) = 6 / (1 + 5) = 1; in float32 exactly 1.0 (tested)
GAIN_INIT_RAW = -math.log(5.0)
PIVOTS = ("corner", "centre")
AFFINE_NAMES = ("rotation", "scale_x", "scale_y", "shear_x", "shear_y", "translate_x", "translate_y")


def affine_init() -> torch.Tensor:
    """The 7 raw affine scalars at the start: rotation 0, scales sigmoid(1), shears 0, translations 0."""
    return torch.tensor([0.0, SCALE_INIT_RAW, SCALE_INIT_RAW, 0.0, 0.0, 0.0, 0.0])


def affine_values(raw: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
    """The bounded values of the raw scalars ``[7]``: angles in rad, scales, translations in pixels."""
    rotation = ROTATION_BOUND * torch.tanh(raw[0])
    scale = torch.sigmoid(raw[1:3])
    shear = SHEAR_BOUND * torch.tanh(raw[3:5])
    translate = TRANSLATION_FRACTION * size * torch.tanh(raw[5:7])
    return {"rotation": rotation, "scale_x": scale[0], "scale_y": scale[1], "shear_x": shear[0], "shear_y": shear[1],
            "translate_x": translate[0], "translate_y": translate[1]}  # fmt: skip


def _factors(values: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cos, sin = torch.cos(values["rotation"]), torch.sin(values["rotation"])
    one = torch.ones_like(cos)
    rotation = torch.stack([torch.stack([cos, -sin]), torch.stack([sin, cos])])
    shear = torch.stack([torch.stack([one, torch.tan(values["shear_x"])]), torch.stack([torch.tan(values["shear_y"]), one])])
    return rotation, shear, torch.stack([values["scale_x"], values["scale_y"]])


def forward_matrix(values: dict[str, torch.Tensor]) -> torch.Tensor:
    """``M = R(rotation) @ Shear @ diag(scale)``, ``[2, 2]`` acting on ``(x, y)`` (x to the right, y down)."""
    rotation, shear, scale = _factors(values)
    return rotation @ shear @ torch.diag(scale)


def inverse_matrix(values: dict[str, torch.Tensor]) -> torch.Tensor:
    """``M^-1 = diag(1 / scale) @ Shear^-1 @ R^T``, written out (no general inverse: a scale that
    underflows to 0 gives inf, not a NaN from a singular solve)."""
    rotation, shear, scale = _factors(values)
    tan_x, tan_y = shear[0, 1], shear[1, 0]
    one = torch.ones_like(tan_x)
    shear_inverse = torch.stack([torch.stack([one, -tan_x]), torch.stack([-tan_y, one])]) / (1 - tan_x * tan_y)
    return torch.diag(1 / scale) @ shear_inverse @ rotation.T


def sampling_theta(raw: torch.Tensor, size: int, pivot: str = "corner") -> torch.Tensor:
    """The ``[1, 2, 3]`` matrix for ``F.affine_grid`` (output -> input, normalized coordinates,
    ``align_corners=False``) of the warp ``p_out = M (p_in - c) + c + t`` about the pivot ``c``."""
    if pivot not in PIVOTS:
        raise UserError(f"unknown warp pivot {pivot!r}; choose {' or '.join(PIVOTS)}")
    values = affine_values(raw.float(), size)
    inverse = inverse_matrix(values)
    # normalized coordinates: the image spans [-1, 1], so a pixel is 2 / size
    shift = torch.stack([values["translate_x"], values["translate_y"]]) * (2.0 / size)
    centre = torch.full((2,), -1.0 if pivot == "corner" else 0.0, device=raw.device)
    offset = centre - inverse @ (centre + shift)
    return torch.cat([inverse, offset[:, None]], dim=1)[None]


def sampling_grid(theta: torch.Tensor, size: int) -> torch.Tensor:
    """The ``[1, size, size, 2]`` bilinear sampling grid of ``theta``."""
    return F.affine_grid(theta, [1, 1, size, size], align_corners=False)


def warp(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample every image of ``x`` at ``grid`` (bilinear, zeros outside, ``align_corners=False``)."""
    return F.grid_sample(x, grid.to(x.dtype).expand(x.shape[0], -1, -1, -1), mode="bilinear", padding_mode="zeros", align_corners=False)


def colour_gain(raw: torch.Tensor) -> torch.Tensor:
    """The per-pixel, per-channel gain ``6 sigmoid(g)``, in (0, 6)."""
    return GAIN_MAX * torch.sigmoid(raw)


class AffineColourAdditive(nn.Module):
    """ACAVP's transform in ``[0, 1]`` pixel space on ``size`` x ``size`` images (see the module docstring).

    Parameters: ``affine [7]`` (raw rotation, scale x, scale y, shear x, shear y, translation x,
    translation y), ``gain [C, S, S]`` (raw, ``6 sigmoid``) and ``prompt [C, S, S]`` (the additive
    pattern, pixel units, unbounded).
    """

    def __init__(self, size: int, channels: int = 3, pivot: str = "corner", prompt_init: torch.Tensor | None = None, **base) -> None:
        super().__init__(**base)  # ``base``: what a prompt's base class is built from (its spec)
        if pivot not in PIVOTS:
            raise UserError(f"unknown warp pivot {pivot!r}; choose {' or '.join(PIVOTS)}")
        self.size, self.pivot = size, pivot
        self.affine = nn.Parameter(affine_init())
        self.gain = nn.Parameter(torch.full((channels, size, size), GAIN_INIT_RAW))
        self.prompt = nn.Parameter(torch.zeros(channels, size, size) if prompt_init is None else prompt_init)

    def grid(self) -> torch.Tensor:
        return sampling_grid(sampling_theta(self.affine, self.size, self.pivot), self.size)

    def coverage(self, grid: torch.Tensor | None = None) -> torch.Tensor:
        """``warp(ones)``, ``[1, 1, S, S]``: 1 where the warped image lies, 0 on the empty canvas."""
        grid = self.grid() if grid is None else grid
        return warp(torch.ones(1, 1, self.size, self.size, device=grid.device), grid)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """``gain * warp(x) + (1 - warp(ones)) * prompt`` for ``x [B, C, S, S]`` in [0, 1]; unclamped."""
        if tuple(x.shape[-2:]) != (self.size, self.size):
            raise ValueError(f"ACAVP transform built for {self.size}px images, got {tuple(x.shape[-2:])}")
        grid = self.grid()
        empty = 1.0 - self.coverage(grid)
        return warp(x, grid) * colour_gain(self.gain) + empty * self.prompt

    def pattern(self) -> torch.Tensor:
        """What the transform makes of a mid-grey image (0.5 everywhere), ``[C, S, S]`` in [0, 1] pixel
        units: the warped region shows ``0.5 * gain`` (grey where the gain is 1), the empty band the
        prompt. Unclamped."""
        grey = torch.full((1, self.gain.shape[0], self.size, self.size), 0.5, device=self.gain.device)
        return self.transform(grey)[0]
