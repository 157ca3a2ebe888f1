"""Bahng et al.'s patch prompts (2022): a trainable ``--prompt-size`` square added to the normalized image.

* ``fixed_patch``: at the top-left corner.
* ``random_patch``: at a random location, one per batch. Training draws it from the generator
  given by :meth:`RandomPatchPrompt.use_generator` (the engine's per-epoch generator, handed over
  by the CLIP families, so a resumed run replays the same locations). Evaluation also uses one
  random location per batch, as Bahng et al.'s code does, but from a generator reseeded with
  ``eval_seed`` every time the module enters eval mode, so every evaluation pass sees the same
  sequence of locations and results are reproducible.

Locations range over every placement that keeps the square inside the image. The patch is added
after normalization (``pattern()`` in normalized units); ``--prompt-init randn`` draws it from
``N(0, 1)``. A CNN's images are resized to the network's side first.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UserError
from models.patterns import initial_values
from models.prompts.base import CNN, PromptSpec, SizedPatternPrompt
from models.prompts.registry import register_prompt


@register_prompt("fixed_patch", "Bahng et al.'s --prompt-size square added at the top-left corner")
class FixedPatchPrompt(SizedPatternPrompt):
    """A trainable ``prompt_size`` square added at the top-left corner."""

    def __init__(self, spec: PromptSpec) -> None:
        super().__init__(spec)
        size, p = spec.out_size, self.prompt_size
        if not 0 < p <= size:
            raise UserError(f"--prompt-size {p} must be between 1 and the image size {size}")
        self.patch = nn.Parameter(initial_values((spec.channels, p, p), spec.init, spec.generator, self.RANDN_SCALE))

    def pattern_at(self, top: int, left: int) -> torch.Tensor:
        """The patch placed with its top-left corner at ``(top, left)`` on a zero ``[C, S, S]`` canvas."""
        s, p = self.out_size, self.prompt_size
        return F.pad(self.patch, (left, s - p - left, top, s - p - top))

    def location(self) -> tuple[int, int]:
        return 0, 0

    def pattern(self) -> torch.Tensor:
        """The patch at the top-left corner of a zero ``[C, S, S]`` (a random patch is drawn there too)."""
        return self.pattern_at(0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.fit(x)) + self.pattern_at(*self.location()).to(x.dtype)


@register_prompt("random_patch", "Bahng et al.'s --prompt-size square added at a random location per batch")
class RandomPatchPrompt(FixedPatchPrompt):
    """The square at a random location per batch (see the module docstring for train vs eval)."""

    UNSUPPORTED = {CNN: "its per-batch location comes from the per-epoch generator that only the CLIP scripts hand it"}
    BATCH_DEPENDENT = True  # one location per forward call: a batch computed in chunks sees several

    def __init__(self, spec: PromptSpec, eval_seed: int = 0) -> None:
        super().__init__(spec)
        self.eval_seed = eval_seed
        self.train_generator = torch.Generator().manual_seed(spec.seed)
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
        top, left = torch.randint(0, self.out_size - self.prompt_size + 1, (2,), generator=generator).tolist()
        self.last_location = (top, left)
        return top, left
