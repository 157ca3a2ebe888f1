"""The visual prompt designs of Bahng et al. (2022), added to the CLIP-normalized image.

Unlike the expansive prompt of :mod:`models.prompts.pad`, these keep the image at the network's
resolution and add an unconstrained pattern (no sigmoid) on top of it after normalization:

* ``padding``: a frame of width ``prompt_size`` around the border (4 parameter blocks, as in
  Bahng et al.; 69,840 values for width 30 at 224).
* ``fixed_patch``: a ``prompt_size`` square at the top-left corner.
* ``lowrank``: a rank-``r`` pattern ``B @ A`` over the whole image (LoR-VP, Jin et al., ICLR 2025;
  ``B [C, S, r]``, ``A [C, r, S]``, 2 * 3 * 224 * 4 = 5,376 values at rank 4), initialised as the
  CNN low-rank prompt (``B`` zero, ``A`` Kaiming-uniform).
* ``acavp``: ACAVP's affine warp, colour gain and additive prompt in the empty band (Enomoto,
  NeurIPS 2025), the transform of :mod:`models.affine_colour` shared with the CNN prompt. It works
  in ``[0, 1]`` pixel space, so it undoes CLIP's normalization, transforms, and normalizes again.
* ``random_patch``: the same square at a random location, one location per batch. Training
  draws it from the generator given by :meth:`RandomPatchPrompt.use_generator` (the engine's
  per-epoch generator, so a resumed run replays the same locations). Evaluation also uses one
  random location per batch, as Bahng et al.'s code does, but from a generator reseeded with
  ``eval_seed`` every time the module enters eval mode, so every evaluation pass sees the same
  sequence of locations and results are reproducible.

Locations range over every placement that keeps the square inside the image.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from common.choices import Choices
from common.errors import UserError
from models.affine_colour import AffineColourAdditive
from models.layers import Normalize, full_pattern, low_rank_factors


def _init(shape: tuple[int, ...], init: str) -> nn.Parameter:
    if init == "zero":
        return nn.Parameter(torch.zeros(shape))
    if init == "randn":
        return nn.Parameter(torch.randn(shape))
    raise UserError(f"unknown prompt init {init!r}; choose zero or randn")


class PaddingPrompt(nn.Module):
    """A trainable frame of width ``prompt_size`` added to the border of the image."""

    def __init__(self, image_size: int = 224, prompt_size: int = 30, init: str = "zero", channels: int = 3) -> None:
        super().__init__()
        if not 0 < 2 * prompt_size < image_size:
            raise UserError(f"--prompt-size {prompt_size} must be positive and less than half the {image_size}px image")
        inner = image_size - 2 * prompt_size
        self.image_size, self.prompt_size = image_size, prompt_size
        self.pad_up = _init((channels, prompt_size, image_size), init)
        self.pad_down = _init((channels, prompt_size, image_size), init)
        self.pad_left = _init((channels, inner, prompt_size), init)
        self.pad_right = _init((channels, inner, prompt_size), init)

    def pattern(self) -> torch.Tensor:
        """The additive pattern ``[C, S, S]``: the frame, zero inside."""
        c, inner = self.pad_left.shape[0], self.pad_left.shape[1]
        centre = self.pad_left.new_zeros(c, inner, inner)
        middle = torch.cat([self.pad_left, centre, self.pad_right], dim=2)
        return torch.cat([self.pad_up, middle, self.pad_down], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pattern().to(x.dtype)


class FixedPatchPrompt(nn.Module):
    """A trainable ``prompt_size`` square added at the top-left corner."""

    def __init__(self, image_size: int = 224, prompt_size: int = 30, init: str = "zero", channels: int = 3) -> None:
        super().__init__()
        if not 0 < prompt_size <= image_size:
            raise UserError(f"--prompt-size {prompt_size} must be between 1 and the image size {image_size}")
        self.image_size, self.prompt_size = image_size, prompt_size
        self.patch = _init((channels, prompt_size, prompt_size), init)

    def pattern_at(self, top: int, left: int) -> torch.Tensor:
        """The patch placed with its top-left corner at ``(top, left)`` on a zero ``[C, S, S]`` canvas."""
        s, p = self.image_size, self.prompt_size
        return F.pad(self.patch, (left, s - p - left, top, s - p - top))

    def location(self) -> tuple[int, int]:
        return 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pattern_at(*self.location()).to(x.dtype)


class RandomPatchPrompt(FixedPatchPrompt):
    """The square at a random location per batch (see the module docstring for train vs eval)."""

    def __init__(
        self, image_size: int = 224, prompt_size: int = 30, init: str = "zero", channels: int = 3, seed: int = 0, eval_seed: int = 0
    ) -> None:
        super().__init__(image_size, prompt_size, init, channels)
        self.eval_seed = eval_seed
        self.train_generator = torch.Generator().manual_seed(seed)
        self.eval_generator = torch.Generator().manual_seed(eval_seed)
        self.last_location: tuple[int, int] | None = None

    def use_generator(self, generator: torch.Generator) -> None:
        """Draw training locations from ``generator`` from now on."""
        self.train_generator = generator

    def train(self, mode: bool = True) -> RandomPatchPrompt:
        if not mode:
            self.eval_generator.manual_seed(self.eval_seed)
        return super().train(mode)

    def location(self) -> tuple[int, int]:
        generator = self.train_generator if self.training else self.eval_generator
        top, left = torch.randint(0, self.image_size - self.prompt_size + 1, (2,), generator=generator).tolist()
        self.last_location = (top, left)
        return top, left


class LowRankPrompt(nn.Module):
    """A trainable pattern of rank ``rank`` per channel, ``B @ A``, added to the whole image."""

    def __init__(self, image_size: int = 224, rank: int = 4, init: str = "zero", channels: int = 3) -> None:
        super().__init__()
        if not 1 <= rank <= image_size:
            raise UserError(f"--rank must be between 1 and the image size {image_size}, got {rank}")
        if init not in ("zero", "randn"):
            raise UserError(f"unknown prompt init {init!r}; choose zero or randn")
        left, right = low_rank_factors(channels, image_size, rank, init)
        self.image_size, self.rank = image_size, rank
        self.left, self.right = nn.Parameter(left), nn.Parameter(right)

    def pattern(self) -> torch.Tensor:
        """The additive pattern ``[C, S, S]``."""
        return torch.bmm(self.left, self.right)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pattern().to(x.dtype)


class AffineColourAdditiveCLIPPrompt(AffineColourAdditive):
    """ACAVP on the CLIP-normalized image: back to [0, 1], warp, gain, fill the empty band, normalize."""

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float], init: str = "zero", channels: int = 3, pivot: str = "corner") -> None:
        super().__init__(image_size, channels, pivot, prompt_init=full_pattern(channels, image_size, init))
        self.normalize = Normalize(mean, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = (x - self.normalize.shift) / self.normalize.scale  # CLIP's normalization undone: [0, 1] pixels
        return self.normalize(self.transform(pixels.float())).to(x.dtype)


CLIP_PROMPTS = {"padding": PaddingPrompt, "fixed_patch": FixedPatchPrompt, "random_patch": RandomPatchPrompt, "lowrank": LowRankPrompt, "acavp": AffineColourAdditiveCLIPPrompt}
CLIP_PROMPT_DESCRIPTIONS = {
    "padding": "Bahng et al.'s frame of width --prompt-size added to the border of the CLIP-normalized 224 image",
    "fixed_patch": "Bahng et al.'s --prompt-size square added at the top-left corner",
    "random_patch": "Bahng et al.'s --prompt-size square added at a random location per batch",
    "lowrank": "LoR-VP's pattern of rank --rank per channel added to the whole image",
    "acavp": "ACAVP: the image affinely warped (7 bounded scalars), a per-pixel colour gain, a trainable pattern where the warp left it empty",
}
CLIP_PROMPT_ALIASES = {"pad": "padding"}  # the CNN scripts' name for their frame prompt, stored as padding
# ``--prompt`` of the CLIP methods
CLIP_PROMPT_CHOICES = Choices("prompt", lambda: CLIP_PROMPT_DESCRIPTIONS, lambda: CLIP_PROMPT_ALIASES)
DEFAULT_RANK = 4


def build_clip_prompt(
    name: str, image_size: int, prompt_size: int, init: str, seed: int = 0, rank: int | None = None,
    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
) -> nn.Module:
    """The prompt ``name``; ``mean`` and ``std`` (CLIP's statistics) are needed by ``acavp`` only."""
    name = CLIP_PROMPT_CHOICES.resolve(name)
    if rank is not None and name != "lowrank":
        raise UserError(f"--rank applies to --prompt lowrank, not --prompt {name}")
    if name == "random_patch":
        return RandomPatchPrompt(image_size, prompt_size, init, seed=seed)
    if name == "acavp":
        if mean is None or std is None:
            raise ValueError("the acavp prompt needs CLIP's mean and std")
        return AffineColourAdditiveCLIPPrompt(image_size, mean, std, init)
    if name == "lowrank":
        return LowRankPrompt(image_size, DEFAULT_RANK if rank is None else rank, init)
    return CLIP_PROMPTS[name](image_size, prompt_size, init)


class PromptedCLIPInput(nn.Module):
    """The input transform of the CLIP methods: CLIP preprocessing, then the prompt (if any)."""

    def __init__(self, preprocess: nn.Module, prompt: nn.Module | None) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.prompt = prompt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)
        return x if self.prompt is None else self.prompt(x)
