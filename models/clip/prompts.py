"""The visual prompt designs of Bahng et al. (2022), added to the CLIP-normalized image.

Unlike the expansive prompt of :mod:`models.prompts.pad`, these keep the image at the network's
resolution and add an unconstrained pattern (no sigmoid) on top of it after normalization:

* ``padding``: a frame of width ``prompt_size`` around the border (4 parameter blocks, as in
  Bahng et al.; 69,840 values for width 30 at 224).
* ``resize_padding``: AttrVR's frame (Cai et al., ICLR 2025): the image is taken at
  ``image_size - 2 * prompt_size`` (192 at 224 with width 16: :attr:`ResizePaddingPrompt.input_size`,
  so the family preprocesses it at that size), padded with zeros (the mean colour, after
  normalization) to ``image_size``, and the trainable frame is added there; the image itself is
  never covered.
* ``fixed_patch``: a ``prompt_size`` square at the top-left corner.
* ``lowrank``: a rank-``r`` pattern ``B @ A`` over the whole image (LoR-VP, Jin et al., ICLR 2025;
  ``B [C, S, r]``, ``A [C, r, S]``, 2 * 3 * 224 * 4 = 5,376 values at rank 4): the CNN low-rank
  prompt's :class:`models.patterns.LowRankPattern` (``B`` zero, ``A`` Kaiming-uniform).
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

Initial values follow :mod:`models.patterns`: ``zero``, or ``randn`` from ``N(0, 1)`` for the
frame and patches (Bahng et al.'s code draws them so) and ``N(0, 0.01^2)`` for the low-rank
factors, all drawn from the ``generator`` given (the run's ``init_generator(seed, "prompt")``).
``pattern()`` here is in CLIP's normalized units (the prompt is added after normalizing), and
:meth:`picture` draws it centred at grey.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from common.choices import Choices
from common.errors import UserError
from common.seeding import init_generator
from models.affine_colour import AffineColourAdditive
from models.layers import Normalize
from models.patterns import ADDITIVE_RANDN_SCALE, LowRankPattern, PromptPicture, initial_values, signed_picture

RANDN_SCALE = 1.0  # --prompt-init randn of the frame and patches: N(0, 1), as Bahng et al.'s code


def _generator(generator: torch.Generator | None) -> torch.Generator:
    return init_generator(0, "prompt") if generator is None else generator


class CLIPPrompt(nn.Module):
    """Base of the CLIP prompts: ``pattern()`` (``[C, S, S]``, normalized units) and its picture."""

    def pattern(self) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def picture(self) -> PromptPicture:
        """The pattern centred at grey, scaled by its largest ``|value|`` (the per-epoch PNG)."""
        return signed_picture(self.pattern(), units="normalized")


class PaddingPrompt(CLIPPrompt):
    """A trainable frame of width ``prompt_size`` added to the border of the image."""

    def __init__(
        self, image_size: int = 224, prompt_size: int = 30, init: str = "zero", channels: int = 3, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        generator = _generator(generator)
        if not 0 < 2 * prompt_size < image_size:
            raise UserError(f"--prompt-size {prompt_size} must be positive and less than half the {image_size}px image")
        inner = image_size - 2 * prompt_size
        self.image_size, self.prompt_size = image_size, prompt_size
        shapes = {"pad_up": (prompt_size, image_size), "pad_down": (prompt_size, image_size), "pad_left": (inner, prompt_size), "pad_right": (inner, prompt_size)}
        for name, shape in shapes.items():
            setattr(self, name, nn.Parameter(initial_values((channels, *shape), init, generator, RANDN_SCALE)))

    def pattern(self) -> torch.Tensor:
        """The additive pattern ``[C, S, S]``: the frame, zero inside."""
        c, inner = self.pad_left.shape[0], self.pad_left.shape[1]
        centre = self.pad_left.new_zeros(c, inner, inner)
        middle = torch.cat([self.pad_left, centre, self.pad_right], dim=2)
        return torch.cat([self.pad_up, middle, self.pad_down], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pattern().to(x.dtype)


class ResizePaddingPrompt(PaddingPrompt):
    """The image, already at ``image_size - 2 * prompt_size``, zero-padded to ``image_size`` inside a trainable frame."""

    @property
    def input_size(self) -> int:
        """The side of the (normalized) image this prompt takes."""
        return self.image_size - 2 * self.prompt_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"resize_padding takes {self.input_size} x {self.input_size} images, got {tuple(x.shape[-2:])}")
        p = self.prompt_size
        return F.pad(x, (p, p, p, p)) + self.pattern().to(x.dtype)


class FixedPatchPrompt(CLIPPrompt):
    """A trainable ``prompt_size`` square added at the top-left corner."""

    def __init__(
        self, image_size: int = 224, prompt_size: int = 30, init: str = "zero", channels: int = 3, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if not 0 < prompt_size <= image_size:
            raise UserError(f"--prompt-size {prompt_size} must be between 1 and the image size {image_size}")
        self.image_size, self.prompt_size = image_size, prompt_size
        self.patch = nn.Parameter(initial_values((channels, prompt_size, prompt_size), init, _generator(generator), RANDN_SCALE))

    def pattern_at(self, top: int, left: int) -> torch.Tensor:
        """The patch placed with its top-left corner at ``(top, left)`` on a zero ``[C, S, S]`` canvas."""
        s, p = self.image_size, self.prompt_size
        return F.pad(self.patch, (left, s - p - left, top, s - p - top))

    def location(self) -> tuple[int, int]:
        return 0, 0

    def pattern(self) -> torch.Tensor:
        """The patch at the top-left corner of a zero ``[C, S, S]`` (a random patch is drawn there too)."""
        return self.pattern_at(0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pattern_at(*self.location()).to(x.dtype)


class RandomPatchPrompt(FixedPatchPrompt):
    """The square at a random location per batch (see the module docstring for train vs eval)."""

    def __init__(
        self,
        image_size: int = 224,
        prompt_size: int = 30,
        init: str = "zero",
        channels: int = 3,
        seed: int = 0,
        eval_seed: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(image_size, prompt_size, init, channels, generator)
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


class LowRankPrompt(CLIPPrompt):
    """A trainable pattern of rank ``rank`` per channel, ``B @ A``, added to the whole image."""

    def __init__(self, image_size: int = 224, rank: int = 4, init: str = "zero", channels: int = 3, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.image_size = image_size
        self.low_rank = LowRankPattern(channels, image_size, rank, init, _generator(generator))

    @property
    def rank(self) -> int:
        return self.low_rank.rank

    @property
    def left(self) -> nn.Parameter:
        return self.low_rank.left

    @property
    def right(self) -> nn.Parameter:
        return self.low_rank.right

    def pattern(self) -> torch.Tensor:
        """The additive pattern ``[C, S, S]``."""
        return self.low_rank()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pattern().to(x.dtype)


class AffineColourAdditiveCLIPPrompt(AffineColourAdditive, CLIPPrompt):
    """ACAVP on the CLIP-normalized image: back to [0, 1], warp, gain, fill the empty band, normalize.

    ``pattern()`` here is in CLIP's normalized units like the other CLIP prompts': what the prompt
    makes of a mid-grey image, minus that grey (so the snapshot shows the change, centred at grey).
    """

    def __init__(
        self, image_size: int, mean: Sequence[float], std: Sequence[float], init: str = "zero", channels: int = 3, pivot: str = "corner",
        generator: torch.Generator | None = None,
    ) -> None:
        start = initial_values((channels, image_size, image_size), init, _generator(generator), ADDITIVE_RANDN_SCALE)
        super().__init__(image_size, channels, pivot, prompt_init=start)
        self.normalize = Normalize(mean, std)

    def pattern(self) -> torch.Tensor:
        grey = AffineColourAdditive.pattern(self)  # [0, 1] pixels
        return (grey - 0.5) * self.normalize.scale[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = (x - self.normalize.shift) / self.normalize.scale  # CLIP's normalization undone: [0, 1] pixels
        return self.normalize(self.transform(pixels.float())).to(x.dtype)


CLIP_PROMPTS = {
    "padding": PaddingPrompt, "resize_padding": ResizePaddingPrompt, "fixed_patch": FixedPatchPrompt, "random_patch": RandomPatchPrompt,
    "lowrank": LowRankPrompt, "acavp": AffineColourAdditiveCLIPPrompt,
}  # fmt: skip
CLIP_PROMPT_DESCRIPTIONS = {
    "padding": "Bahng et al.'s frame of width --prompt-size added to the border of the CLIP-normalized 224 image",
    "resize_padding": "AttrVR's frame: the image resized to 224 - 2 x --prompt-size (192 at 16), zero-padded to 224, a frame added there",
    "fixed_patch": "Bahng et al.'s --prompt-size square added at the top-left corner",
    "random_patch": "Bahng et al.'s --prompt-size square added at a random location per batch",
    "lowrank": "LoR-VP's pattern of rank --rank per channel added to the whole image",
    "acavp": "ACAVP: the image affinely warped (7 bounded scalars), a per-pixel colour gain, a trainable pattern where the warp left it empty",
}
CLIP_PROMPT_ALIASES = {"pad": "padding"}  # the CNN scripts' name for their frame prompt, stored as padding
# ``--prompt`` of the CLIP methods
CLIP_PROMPT_CHOICES = Choices("prompt", lambda: CLIP_PROMPT_DESCRIPTIONS, lambda: CLIP_PROMPT_ALIASES)
DEFAULT_RANK = 4


def clip_prompt_input_size(name: str, image_size: int, prompt_size: int) -> int:
    """The side of the image ``--prompt name`` takes: CLIP's input size, or less for ``resize_padding``."""
    return image_size - 2 * prompt_size if name == "resize_padding" else image_size


def build_clip_prompt(
    name: str, image_size: int, prompt_size: int, init: str, seed: int = 0, rank: int | None = None, generator: torch.Generator | None = None,
    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
) -> CLIPPrompt:
    """The prompt ``name``; its initial values drawn from ``generator`` (default: ``init_generator(seed, "prompt")``);
    ``mean`` and ``std`` (CLIP's statistics) are needed by ``acavp`` only."""
    name = CLIP_PROMPT_CHOICES.resolve(name)
    if rank is not None and name != "lowrank":
        raise UserError(f"--rank applies to --prompt lowrank, not --prompt {name}")
    generator = init_generator(seed, "prompt") if generator is None else generator
    if name == "random_patch":
        return RandomPatchPrompt(image_size, prompt_size, init, seed=seed, generator=generator)
    if name == "acavp":
        if mean is None or std is None:
            raise ValueError("the acavp prompt needs CLIP's mean and std")
        return AffineColourAdditiveCLIPPrompt(image_size, mean, std, init, generator=generator)
    if name == "lowrank":
        return LowRankPrompt(image_size, DEFAULT_RANK if rank is None else rank, init, generator=generator)
    return CLIP_PROMPTS[name](image_size, prompt_size, init, generator=generator)


class PromptedCLIPInput(nn.Module):
    """The input transform of the CLIP methods: CLIP preprocessing, then the prompt (if any)."""

    def __init__(self, preprocess: nn.Module, prompt: nn.Module | None) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.prompt = prompt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)
        return x if self.prompt is None else self.prompt(x)

    def picture(self) -> PromptPicture | None:
        """The prompt's snapshot picture, or None without a prompt."""
        return None if self.prompt is None else self.prompt.picture()
