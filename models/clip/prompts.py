"""CLIP's side of the visual prompts: building one for a CLIP model and putting it after CLIP's preprocessing.

The prompts themselves are those of :mod:`models.prompts`, one registry for CNNs and CLIP. On CLIP
a prompt receives the image resized and centre-cropped by CLIP's own preprocessing (to the
prompt's :meth:`~models.prompts.base.VisualPrompt.input_side`, e.g. 192 for AttrVR's
``resize_padding``), in ``[0, 1]``, and normalizes it with CLIP's statistics itself.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from common.options import Options
from common.seeding import init_generator
from models.patterns import PromptPicture
from models.prompts import CLIP, PromptSpec, build_prompt, prompt_choices, prompt_class

# ``--prompt`` of the CLIP methods
CLIP_PROMPT_CHOICES = prompt_choices(CLIP)
UNIT_STATISTICS = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # mean and std that leave the image as it is


def clip_prompt_input_size(name: str, image_size: int, options: Options | None = None) -> int:
    """The side of the image ``--prompt name`` takes on CLIP: CLIP's input size, or less (``resize_padding``)."""
    return prompt_class(name, CLIP).input_side(image_size, options)


def build_clip_prompt(
    name: str, image_size: int, options: Options | None = None, init: str = "zero", *, mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None, seed: int = 0, generator: torch.Generator | None = None,
) -> nn.Module:
    """The prompt ``name`` for a CLIP model whose input side is ``image_size`` and statistics ``mean``/``std``.

    ``options``: the prompt's own (an instance of its ``OPTIONS``; None: the defaults); initial values
    drawn from ``generator`` (default: ``init_generator(seed, "prompt")``); without ``mean`` and
    ``std`` the prompt leaves the image unnormalized (tests). Feed it through :class:`PromptedCLIPInput`.
    """
    cls = prompt_class(name, CLIP)
    side = cls.input_side(image_size, options)
    mean, std = (mean, std) if mean is not None and std is not None else UNIT_STATISTICS
    generator = init_generator(seed, "prompt") if generator is None else generator
    spec = PromptSpec((side, side), mean, std, out_size=image_size, init=init, options=options, generator=generator, seed=seed, kind=CLIP)
    return build_prompt(name, spec)


class PromptedCLIPInput(nn.Module):
    """The input transform of the CLIP methods: CLIP's preprocessing, then the prompt (if any).

    With a prompt, ``preprocess`` stops before the normalization (``CLIPPreprocess(..., normalized=False)``):
    the prompt normalizes.
    """

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
