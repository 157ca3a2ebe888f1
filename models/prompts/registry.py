"""The registry of CNN visual prompts, ``--prompt NAME``; it imports none of the prompts.

A prompt is an ``nn.Module`` mapping images in ``[0, 1]`` (``[B, C, h, w]``) to the network's
normalized input, built as ``PROMPTS[name](image_size, mean, std, out_size=, init=, image_mask=)``.
Each prompt module registers itself with :func:`register_prompt`; ``models/prompts/__init__.py``
lists the modules, so importing the package fills the registry.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

PromptClass = TypeVar("PromptClass", bound=type[nn.Module])

PROMPTS: dict[str, type[nn.Module]] = {}


def register_prompt(name: str) -> Callable[[PromptClass], PromptClass]:
    """Class decorator: make the prompt available as ``--prompt name``."""

    def decorator(cls: PromptClass) -> PromptClass:
        PROMPTS[name] = cls
        return cls

    return decorator
