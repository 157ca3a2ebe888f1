"""The contract of every CNN visual prompt: what it is built from (:class:`PromptSpec`) and what it
offers (:class:`VisualPrompt`).

A prompt maps images in ``[0, 1]`` (``[B, C, h, w]``) to the network's normalized input
(``[B, C, S, S]``, ``S = spec.out_size``). Writing a new one (see ``pad.py`` for a short example):

1. subclass :class:`VisualPrompt`, decorate it ``@register_prompt(name)`` and list its module in
   ``models/prompts/__init__.py``;
2. ``__init__(self, spec)``: call ``super().__init__(spec)`` (it stores ``spec``, ``image_size``,
   ``out_size`` and ``normalize``), then create the trainable tensors with
   :func:`models.patterns.initial_values` (``spec.init``, ``spec.generator``); anything else random
   (a small network's weights) is drawn from ``spec.generator`` too (:func:`models.patterns.drawing_from`);
3. ``forward(x)``;
4. ``pattern()``: the additive pattern in pixel space (below);
5. the class attributes: ``OPTIONS`` (the :class:`PromptOptions` fields it reads; any other given is
   an error), ``DEFAULT_AUGMENT`` and ``CROP_FLIP`` (its paper's training recipe), ``SIGNED``
   (whether ``pattern()`` can be negative: how the per-epoch PNG draws it), ``RANDN_SCALE`` (the
   ``N(0, scale^2)`` of ``--prompt-init randn``); a prompt holding a small trained network exposes
   it as ``mask_network`` (its own learning rate).

**What ``pattern()`` means, for every prompt**: the ``[C, S, S]`` pattern, in the pixel units of
the ``[0, 1]`` image, that the prompt adds to the image once the image is on the network's ``S x S``
input (placed on a zero canvas by ``pad``, resized by the others), before the network's
normalization. Where a prompt adds it after normalizing (watermark, SMM), ``pattern()`` is the
parameter times the network's std, the same input. SMM adds a per-image reweighting of it; its
``pattern()`` is the pattern at mask 1. Nothing is clamped: the network sees the sum.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from common.seeding import init_generator
from models.layers import Normalize
from models.patterns import ADDITIVE_RANDN_SCALE, PromptPicture, check_init, signed_picture
from models.prompts.registry import PromptOptions


def default_generator() -> torch.Generator:
    """The generator of a spec built without one (tests, tools): seed 0's ``prompt`` stream."""
    return init_generator(0, "prompt")


@dataclass(frozen=True, eq=False)
class PromptSpec:
    """Everything a CNN prompt is built from.

    ``image_size``: the dataset's ``(h, w)``; ``mean``/``std``: the network's normalization;
    ``out_size``: the side of the network's input (the canvas); ``init``: ``zero`` or ``randn``
    (``--prompt-init``); ``image_mask``: the image pixels a prompt may also write (``[h, w]``, 1 =
    writable; only ``pad`` reads it); ``channels``; ``options``: the per-prompt flags;
    ``generator``: where every random initial value is drawn from (the run's
    ``init_generator(seed, "prompt")``), so the initial prompt does not depend on how many random
    numbers building the network took.
    """

    image_size: tuple[int, int]
    mean: Sequence[float]
    std: Sequence[float]
    out_size: int = 224
    init: str = "zero"
    image_mask: torch.Tensor | None = None
    channels: int = 3
    options: PromptOptions = field(default_factory=PromptOptions)
    generator: torch.Generator = field(default_factory=default_generator)

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        check_init(self.init)


class VisualPrompt(nn.Module):
    """Base of the CNN prompts: the spec, the normalization, ``pattern()`` and its picture.

    See the module docstring for the meaning of :meth:`pattern` and how to write a prompt.
    """

    OPTIONS: tuple[str, ...] = ()
    DEFAULT_AUGMENT = "none"
    CROP_FLIP = "smm_crop_flip"  # resize to out + 32, random crop, flip: the recipe of a prompt that resizes the image
    SIGNED = True  # pattern() may be negative: drawn centred at grey (see picture())
    RANDN_SCALE = ADDITIVE_RANDN_SCALE

    def __init__(self, spec: PromptSpec) -> None:
        super().__init__()
        self.spec = spec
        self.image_size = spec.image_size
        self.out_size = spec.out_size
        self.normalize = Normalize(spec.mean, spec.std)

    @property
    def std(self) -> torch.Tensor:
        """The network's std as ``[C, 1, 1]``: a pattern added after normalizing, times this, is in pixel units."""
        return 1.0 / self.normalize.scale[0]

    def pattern(self) -> torch.Tensor:
        """The additive pattern in pixel units, ``[C, S, S]`` (module docstring)."""
        raise NotImplementedError

    def shown_pattern(self) -> torch.Tensor:
        """What :meth:`picture` draws: :meth:`pattern` unless a prompt says otherwise (SMM)."""
        return self.pattern()

    @torch.no_grad()
    def picture(self) -> PromptPicture:
        """The per-epoch snapshot image of the prompt.

        ``SIGNED`` prompts: :meth:`shown_pattern` centred at mid-grey and scaled by its largest
        ``|value|`` (written as the picture's scale), so a negative value is darker than grey, never
        clipped. Others (``pad``: ``sigmoid(theta)`` in [0, 1]): the pattern as it is.
        """
        shown = self.shown_pattern().detach().float().cpu()
        return signed_picture(shown) if self.SIGNED else PromptPicture(shown.clamp(0, 1))

    def check_size(self, x: torch.Tensor, resized_too: bool = True) -> None:
        """A ``ValueError`` unless ``x`` has the dataset's size (or, ``resized_too``, the network's)."""
        sizes = [self.image_size] + ([(self.out_size, self.out_size)] if resized_too else [])
        if tuple(x.shape[-2:]) not in sizes:
            wanted = " or ".join(f"{h}x{w}" for h, w in sizes)
            raise ValueError(f"prompt built for {wanted} images, got {tuple(x.shape[-2:])}")
