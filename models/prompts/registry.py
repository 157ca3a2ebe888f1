"""The registry of visual prompts, ``--prompt NAME`` of the CNN and the CLIP scripts; it imports none of them.

A prompt is a :class:`models.prompts.base.VisualPrompt` built as ``build_prompt(name, spec)``
from a :class:`models.prompts.base.PromptSpec`; ``models/prompts/base.py`` says what it declares
and how to write one. Each prompt module registers itself with :func:`register_prompt`;
``models/prompts/__init__.py`` lists the project's modules, so importing the package fills the
registry. Prompts kept outside the project are imported from the modules or ``.py`` files named
(comma-separated) in the environment variable ``VP_PROMPT_MODULES`` (:func:`load_plugins`, called
by every method script while it builds its flags).

Each model kind reads the registry through its own :class:`Choices` (:func:`prompt_choices`):
the prompts that work there, each with its one-line description (the class docstring's first line
unless given), and the aliases of that kind (other spellings accepted and stored as the name).
A prompt that declares a kind unsupported (``UNSUPPORTED``) is refused there with its reason.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TypeVar

from common.choices import Choices, first_line
from common.errors import UserError
from common.options import Options, distinct

PromptClass = TypeVar("PromptClass", bound=type)

PROMPTS: dict[str, type] = {}
PROMPT_DESCRIPTIONS: dict[str, str] = {}
KIND_ALIASES: dict[str, dict[str, str]] = {"cnn": {}, "clip": {}}  # model kind -> other spelling -> registered name
PLUGINS_VARIABLE = "VP_PROMPT_MODULES"
KIND_WORDS = {"cnn": "CNN", "clip": "CLIP"}


def register_prompt(name: str, description: str | None = None, aliases: Mapping[str, Sequence[str]] | Sequence[str] = ()) -> Callable[[PromptClass], PromptClass]:
    """Class decorator: make the prompt available as ``--prompt name``; ``aliases``: other spellings
    accepted on every model kind, or model kind -> those accepted there (``{"cnn": ("padding",)}``)."""
    by_kind = aliases if isinstance(aliases, Mapping) else {kind: aliases for kind in KIND_ALIASES}

    def decorator(cls: PromptClass) -> PromptClass:
        PROMPTS[name] = cls
        PROMPT_DESCRIPTIONS[name] = first_line(cls) if description is None else description
        for kind, spellings in by_kind.items():
            KIND_ALIASES[kind].update({alias: name for alias in spellings})
        return cls

    return decorator


def _unsupported(name: str, kind: str) -> str | None:
    return getattr(PROMPTS[name], "UNSUPPORTED", {}).get(kind)


def _listed(kind: str) -> dict[str, str]:
    """The prompts of ``kind``: supported there and not an alias of another prompt there."""
    shadowed = KIND_ALIASES[kind]
    return {n: d for n, d in PROMPT_DESCRIPTIONS.items() if _unsupported(n, kind) is None and n not in shadowed}


def _refuse(kind: str) -> Callable[[str], bool]:
    def refuse(name: str) -> bool:
        if name in PROMPTS and _unsupported(name, kind) is not None:
            raise UserError(f"--prompt {name} does not work with {KIND_WORDS[kind]} networks: {_unsupported(name, kind)}")
        return False

    return refuse


def prompt_choices(kind: str) -> Choices:
    """What ``--prompt`` accepts on ``kind`` (``cnn`` or ``clip``) networks."""
    return Choices("prompt", lambda: _listed(kind), lambda: KIND_ALIASES[kind], accepts=_refuse(kind))


PROMPT_CHOICES = prompt_choices("cnn")  # ``--prompt`` of the CNN methods
PROMPT_ALIASES = KIND_ALIASES["cnn"]


def build_prompt(name: str, spec) -> object:
    """The prompt ``name`` (or an alias on ``spec.kind``) built from ``spec``: the one way to build a prompt."""
    name = prompt_choices(spec.kind).resolve(name)
    return PROMPTS[name](spec)


def prompt_class(name: str, kind: str = "cnn") -> type:
    """The class of ``--prompt name`` on ``kind`` networks (an alias resolved; an unsupported pair refused)."""
    return PROMPTS[prompt_choices(kind).resolve(name)]


def option_classes(names: Iterable[str] | None = None) -> list[type[Options]]:
    """The options classes of the prompts ``names`` (None: every registered prompt), once each
    (several prompts may share one)."""
    chosen = sorted(PROMPTS) if names is None else sorted(names)
    return distinct(getattr(PROMPTS[name], "OPTIONS", None) for name in chosen)


def readers(options: type[Options]) -> list[str]:
    """The registered prompts reading ``options``."""
    return sorted(name for name, cls in PROMPTS.items() if getattr(cls, "OPTIONS", None) is options)


def prompts_reading(name: str) -> list[str]:
    """The registered prompts with an option called ``name`` (``input_size``)."""
    return sorted(n for n, cls in PROMPTS.items() if getattr(cls, "OPTIONS", None) is not None and name in {f.name for f in fields(cls.OPTIONS)})


def load_plugins() -> None:
    """Import the prompt modules named in ``VP_PROMPT_MODULES`` (comma-separated module names or
    ``.py`` file paths): each registers its prompt as the project's own modules do."""
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_VARIABLE, "").split(","))):
        try:
            if module.endswith(".py"):
                path = Path(module).expanduser()
                spec = importlib.util.spec_from_file_location(f"vp_prompt_plugin_{path.stem}", path)
                if spec is not None and spec.name in sys.modules:
                    continue
                if spec is None or spec.loader is None or not path.is_file():
                    raise ImportError(f"no such file {path}")
                loaded = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = loaded
                spec.loader.exec_module(loaded)
            else:
                importlib.import_module(module)
        except ImportError as exc:
            raise UserError(f"{PLUGINS_VARIABLE}: cannot import prompt module {module!r}: {exc}") from None
