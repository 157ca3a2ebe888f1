"""The registry of CNN visual prompts, ``--prompt NAME``; it imports none of the prompts.

A prompt is an ``nn.Module`` mapping images in ``[0, 1]`` (``[B, C, h, w]``) to the network's
normalized input, built as ``PROMPTS[name](image_size, mean, std, out_size=, init=, image_mask=)``.
Each prompt module registers itself with :func:`register_prompt`; ``models/prompts/__init__.py``
lists the modules, so importing the package fills the registry. Its one-line description (the
class docstring's first line unless given) is its entry in ``--help``; aliases are other
spellings accepted on the command line and stored as the registered name.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from torch import nn

from common.choices import Choices, first_line

PromptClass = TypeVar("PromptClass", bound=type[nn.Module])

PROMPTS: dict[str, type[nn.Module]] = {}
PROMPT_DESCRIPTIONS: dict[str, str] = {}
PROMPT_ALIASES: dict[str, str] = {}  # other spelling -> registered name


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
