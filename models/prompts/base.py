"""The contract of every visual prompt, for CNNs and CLIP alike: what it is built from
(:class:`PromptSpec`) and what it declares and offers (:class:`VisualPrompt`).

A prompt maps images in ``[0, 1]`` (``[B, C, h, w]``, ``h x w = spec.image_size``) to the
network's normalized input (``[B, C, S, S]``, ``S = spec.out_size``). The same class serves both
model kinds: the spec says what the model needs (its input side and normalization statistics);
a CNN hands the dataset's images, CLIP its own resize and centre crop of them (to
:meth:`VisualPrompt.input_side`). Writing a new one (``watermark.py`` is a short example):

1. one module in ``models/prompts/``: a subclass of :class:`VisualPrompt` decorated
   ``@register_prompt(name)``, listed in ``models/prompts/__init__.py`` (or, outside the project,
   named in ``VP_PROMPT_MODULES``: :mod:`models.prompts.registry`);
2. its options, if any: an ``@dataclass(frozen=True)`` subclass of :class:`common.options.Options`
   named in the class attribute ``OPTIONS``; each field is one flag of every method script that
   takes ``--prompt`` (help, default and run identity generated), read as ``self.options.<field>``;
3. ``__init__(self, spec)``: call ``super().__init__(spec)``, then create the trainable tensors with
   :func:`models.patterns.initial_values` (``spec.init``, ``spec.generator``); anything else random
   is drawn from ``spec.generator`` too (:func:`models.patterns.drawing_from`);
4. ``forward(x)`` and ``pattern()`` (below);
5. what it declares, as class attributes or methods: ``DEFAULT_AUGMENT`` and ``CROP_FLIP`` (its
   paper's training recipe), ``SIGNED`` and ``UNITS`` (how the snapshot draws ``pattern()``),
   ``RANDN_SCALE`` (``--prompt-init randn``), ``UNSUPPORTED`` (model kind -> why it does not work
   there: ``--prompt`` then fails with that reason), ``BATCH_DEPENDENT`` (its output depends on
   the other images of a batch or draws per call), ``GRADIENT_RULE`` (model kind -> its default
   ``raw`` or ``normalised`` rule), ``REVISION`` (model kind -> what joins a run's identity
   where the prompt's computation changed), :meth:`parameter_groups` (parts with their own
   learning rate), :meth:`clipped_parameters` (clipped by the normalised rule) and :meth:`input_side`.

**What ``pattern()`` means**: the ``[C, S, S]`` pattern that the prompt adds to the image once the
image is on the network's ``S x S`` input, in ``UNITS``: ``pixel``, the units of the ``[0, 1]``
image before normalization (where a prompt adds it after normalizing, as watermark and SMM do,
``pattern()`` is the parameter times the network's std), or ``normalized`` (the CLIP frame and
patches of Bahng et al., whose parameters are added in normalized units). SMM adds a per-image
reweighting of it; its ``pattern()`` is the pattern at mask 1. Nothing is clamped.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from common.argtypes import positive_int
from common.options import Options, option
from common.seeding import init_generator
from models.layers import Normalize, resize_square
from models.patterns import ADDITIVE_RANDN_SCALE, PromptPicture, check_init, signed_picture

CNN, CLIP = "cnn", "clip"
MODEL_KINDS = (CNN, CLIP)


def default_generator() -> torch.Generator:
    """The generator of a spec built without one (tests, tools): seed 0's ``prompt`` stream."""
    return init_generator(0, "prompt")


@dataclass(frozen=True)
class PromptSizeOptions(Options):
    """The frame width or patch side of Bahng et al.'s CLIP prompts (padding, resize_padding, fixed_patch, random_patch)."""

    prompt_size: int = option(30, "width of the frame or side of the patch, in pixels of the network's input", type=positive_int, metavar="PX")


@dataclass(frozen=True, eq=False)
class PromptSpec:
    """Everything a prompt is built from.

    ``image_size``: the ``(h, w)`` of the images it receives (a CNN: the dataset's; CLIP: its
    :meth:`VisualPrompt.input_side`); ``mean``/``std``: the network's normalization; ``out_size``:
    the side of the network's input; ``init``: ``zero`` or ``randn`` (``--prompt-init``);
    ``image_mask``: the image pixels a prompt may also write (``[h, w]``, 1 = writable; only
    ``pad`` reads it); ``channels``; ``options``: the prompt's own options (an instance of its
    ``OPTIONS``; None: their defaults); ``generator``: where every random initial value is drawn
    from (the run's ``init_generator(seed, "prompt")``), so the initial prompt does not depend on
    how many random numbers building the network took; ``seed``: the run's seed (a prompt drawing
    per call seeds its own stream with it); ``kind``: ``cnn`` or ``clip``.
    """

    image_size: tuple[int, int]
    mean: Sequence[float]
    std: Sequence[float]
    out_size: int = 224
    init: str = "zero"
    image_mask: torch.Tensor | None = None
    channels: int = 3
    options: Options | None = None
    generator: torch.Generator = field(default_factory=default_generator)
    seed: int = 0
    kind: str = CNN

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        check_init(self.init)
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; choose {' or '.join(MODEL_KINDS)}")


class VisualPrompt(nn.Module):
    """Base of the prompts: the spec, its options, the normalization, ``pattern()`` and its picture.

    See the module docstring for the meaning of :meth:`pattern` and how to write a prompt.
    """

    OPTIONS: ClassVar[type[Options] | None] = None
    DEFAULT_AUGMENT: ClassVar[str] = "none"
    CROP_FLIP: ClassVar[str] = "smm_crop_flip"  # resize to out + 32, random crop, flip: the recipe of a prompt that resizes the image
    SIGNED: ClassVar[bool] = True  # pattern() may be negative: drawn centred at grey (see picture())
    UNITS: ClassVar[str] = "pixel"
    RANDN_SCALE: ClassVar[float] = ADDITIVE_RANDN_SCALE
    UNSUPPORTED: ClassVar[dict[str, str]] = {}  # model kind -> why the prompt does not work there
    BATCH_DEPENDENT: ClassVar[bool] = False  # what it computes for an image depends on the batch (or a draw per call)
    GRADIENT_RULE: ClassVar[dict[str, str]] = {}  # model kind -> its default gradient rule (else raw)
    # model kind -> settings that join the identity of its runs there because what the prompt
    # computes on that kind changed: their old run folders are not mixed with new results
    REVISION: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, spec: PromptSpec) -> None:
        super().__init__()
        self.spec = spec
        self.image_size = spec.image_size
        self.out_size = spec.out_size
        self.normalize = Normalize(spec.mean, spec.std)

    @property
    def options(self) -> Any:
        """The prompt's options: the spec's, or the defaults of ``OPTIONS``."""
        if self.spec.options is not None:
            return self.spec.options
        return self.OPTIONS() if self.OPTIONS is not None else None

    @classmethod
    def input_side(cls, out_size: int, options: Options | None) -> int:
        """The side of the images the prompt takes on CLIP, whose preprocessing resizes to it: the network's by default."""
        return out_size

    @property
    def std(self) -> torch.Tensor:
        """The network's std as ``[C, 1, 1]``: a pattern added after normalizing, times this, is in pixel units."""
        return 1.0 / self.normalize.scale[0]

    def fit(self, x: torch.Tensor, side: int | None = None) -> torch.Tensor:
        """``x`` resized (bilinear, antialiased, on the device) to ``side`` (default ``out_size``) unless it has it already."""
        return resize_square(x, self.out_size if side is None else side)

    def pattern(self) -> torch.Tensor:
        """The additive pattern in ``UNITS``, ``[C, S, S]`` (module docstring)."""
        raise NotImplementedError

    def shown_pattern(self) -> torch.Tensor:
        """What :meth:`picture` draws: :meth:`pattern` unless a prompt says otherwise (SMM)."""
        return self.pattern()

    def parameter_groups(self) -> list[dict]:
        """Parts that learn at their own rate: ``{"name", "params", "lr" (None: --lr), "scheduled"}``
        each; every other trainable parameter learns at ``--lr``. None by default."""
        return []

    def clipped_parameters(self) -> list[nn.Parameter]:
        """The parameters whose normalised gradients are also clipped element-wise (ACAVP's affine and gain)."""
        return []

    @torch.no_grad()
    def picture(self) -> PromptPicture:
        """The per-epoch snapshot image of the prompt.

        ``SIGNED`` prompts: :meth:`shown_pattern` centred at mid-grey and scaled by its largest
        ``|value|`` (written as the picture's scale), so a negative value is darker than grey, never
        clipped. Others (``pad``: ``sigmoid(theta)`` in [0, 1]): the pattern as it is.
        """
        shown = self.shown_pattern().detach().float().cpu()
        return signed_picture(shown, self.UNITS) if self.SIGNED else PromptPicture(shown.clamp(0, 1))

    def check_size(self, x: torch.Tensor, resized_too: bool = True) -> None:
        """A ``ValueError`` unless ``x`` has the dataset's size (or, ``resized_too``, the network's)."""
        sizes = [self.image_size] + ([(self.out_size, self.out_size)] if resized_too else [])
        if tuple(x.shape[-2:]) not in sizes:
            wanted = " or ".join(f"{h}x{w}" for h, w in sizes)
            raise ValueError(f"prompt built for {wanted} images, got {tuple(x.shape[-2:])}")


class SizedPatternPrompt(VisualPrompt):
    """Base of Bahng et al.'s frame and patches: ``--prompt-size`` pixels of an unconstrained
    pattern added after the normalization (normalized units, ``randn`` from ``N(0, 1)`` as their code)."""

    OPTIONS = PromptSizeOptions
    UNITS = "normalized"
    RANDN_SCALE = 1.0
    CROP_FLIP = "resize32_crop_flip"

    def __init__(self, spec: PromptSpec) -> None:
        super().__init__(spec)
        self.prompt_size = self.options.prompt_size
