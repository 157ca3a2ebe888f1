"""The registry of CNN visual prompts, ``--prompt NAME``; it imports none of the prompts.

A prompt is a :class:`models.prompts.base.VisualPrompt` mapping images in ``[0, 1]``
(``[B, C, h, w]``) to the network's normalized input, built as ``PROMPTS[name](spec)`` from a
:class:`models.prompts.base.PromptSpec` (sizes, statistics, init, generator and ``options``).
``options`` (:class:`PromptOptions`) carries the per-prompt flags; a prompt lists the fields it
reads in its class attribute ``OPTIONS``, so a flag given to a prompt that ignores it is an error
rather than a silent no-op. Two more class attributes describe the prompt's training recipe, as
names of ``data.augment_recipes``: ``DEFAULT_AUGMENT`` (``--augment`` when not given) and
``CROP_FLIP`` (the crop-and-flip recipe of its paper: what ``--augment crop_flip`` meant before
the recipes had names of their own). A prompt holding a small
trained network of its own exposes it as ``mask_network``, whose parameters get their own
learning rate. ``models/prompts/base.py`` says what ``pattern()`` means and how to write one.

Each prompt module registers itself with :func:`register_prompt`; ``models/prompts/__init__.py``
lists the modules, so importing the package fills the registry. Its one-line description (the
class docstring's first line unless given) is its entry in ``--help``; aliases are other
spellings accepted on the command line and stored as the registered name.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from torch import nn

from common.choices import Choices, first_line

PromptClass = TypeVar("PromptClass", bound=type[nn.Module])

PROMPTS: dict[str, type[nn.Module]] = {}
PROMPT_DESCRIPTIONS: dict[str, str] = {}
PROMPT_ALIASES: dict[str, str] = {}  # other spelling -> registered name


@dataclass(frozen=True)
class PromptOptions:
    """Per-prompt settings, each read only by the prompts naming it in their ``OPTIONS``."""

    input_size: int | None = None  # pad: resize the image to this side before padding (None: keep it)
    rank: int = 4  # lowrank: rank of the pattern per channel (LoR-VP's default)
    mask_layers: int = 5  # smm: convolutions of the mask network (5 for CNNs, 6 for ViT in SMM)
    mask_patch: int = 8  # smm: side of the patch each mask value covers (2 ** number of max-pools)
    warp_pivot: str = "corner"  # acavp: rotate and scale about the top-left corner (the reference) or the centre


# option field -> the command-line flag that sets it (for error messages)
OPTION_FLAGS = {"input_size": "--input-size", "rank": "--rank", "mask_layers": "--mask-layers", "mask_patch": "--mask-patch", "warp_pivot": "--warp-pivot"}


def register_prompt(name: str, description: str | None = None, aliases: Sequence[str] = ()) -> Callable[[PromptClass], PromptClass]:
    """Class decorator: make the prompt available as ``--prompt name`` (and ``--prompt alias``)."""

    def decorator(cls: PromptClass) -> PromptClass:
        PROMPTS[name] = cls
        PROMPT_DESCRIPTIONS[name] = first_line(cls) if description is None else description
        PROMPT_ALIASES.update({alias: name for alias in aliases})
        return cls

    return decorator


# ``--prompt`` of the CNN methods
PROMPT_CHOICES = Choices("prompt", lambda: PROMPT_DESCRIPTIONS, lambda: PROMPT_ALIASES)


def prompts_reading(option: str) -> list[str]:
    """The registered prompts that read ``option`` (a :class:`PromptOptions` field)."""
    return sorted(name for name, cls in PROMPTS.items() if option in getattr(cls, "OPTIONS", ()))
