"""Typed options: a plug-in (method family, prompt, mapping) declares its flags once, as a dataclass.

A field made with :func:`option` is one flag: its name gives the flag (``rank`` -> ``--rank``), its
default the flag's default, ``help`` its ``--help`` line; the run's settings keep its value under
the field's name (``config.json``'s ``"extra"``), which names the run folder. Read it typed with
``config.options(MyOptions).rank``; nothing else declares, parses or defaults it::

    @dataclass(frozen=True)
    class LowRankOptions(Options):
        rank: int = option(4, "rank of the pattern B @ A per channel", type=positive_int, metavar="R")

How a value is recorded (``recorded``, per field, else the class's ``RECORDED``):

* ``"given"`` (the default): the flag's parser default is unset (None) and the value is kept only
  when given (or set by a method's defaults); read back, an unset field is its dataclass default.
  So adding an option, or a prompt with options, never changes the folder of an existing run.
* ``"always"``: the value is kept whatever it is, the default included (the options of the method
  families that existed before this module, whose run folders hold them).
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

OPTION = "option"  # the key of an option's metadata in its dataclass field
GIVEN, ALWAYS = "given", "always"

OptionsT = TypeVar("OptionsT", bound="Options")


class Options:
    """Base of an options dataclass (decorate the subclass ``@dataclass(frozen=True)``)."""

    RECORDED: ClassVar[str] = GIVEN


@dataclass(frozen=True)
class OptionMeta:
    help: str | Callable[[], str]  # a callable: computed when the flags are built (a listing of a registry)
    flag: str | None  # None: ``--`` + the field name with ``-`` for ``_``
    recorded: str | None  # None: the class's RECORDED
    default_help: str | None  # what "(default: ...)" says, where the default alone would not
    argparse: dict[str, Any]  # type, metavar, choices, nargs, action, ...


def option(default: Any, help: str | Callable[[], str], *, flag: str | None = None, recorded: str | None = None, default_help: str | None = None, **argparse_kwargs: Any) -> Any:
    """One flag as a dataclass field (see the module docstring); ``argparse_kwargs`` go to ``add_argument``."""
    if recorded not in (None, GIVEN, ALWAYS):
        raise ValueError(f"recorded must be {GIVEN!r} or {ALWAYS!r}, got {recorded!r}")
    meta = OptionMeta(help, flag, recorded, default_help, argparse_kwargs)
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={OPTION: meta})
    return field(default=default, metadata={OPTION: meta})


def option_fields(cls: type[Options]) -> list[tuple[Field, OptionMeta]]:
    return [(f, f.metadata[OPTION]) for f in fields(cls) if OPTION in f.metadata]


def _default(f: Field) -> Any:
    return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]


def recorded(cls: type[Options], f: Field) -> str:
    return f.metadata[OPTION].recorded or cls.RECORDED


def flag_of(cls: type[Options], name: str) -> str:
    """The command-line flag of option ``name`` of ``cls``."""
    for f, meta in option_fields(cls):
        if f.name == name:
            return meta.flag or "--" + name.replace("_", "-")
    raise KeyError(f"{cls.__name__} has no option {name!r}")


def add_option_flags(group: argparse._ArgumentGroup | argparse.ArgumentParser, cls: type[Options], prefix: str = "") -> None:
    """One flag per option of ``cls``; ``prefix`` opens each help line (``--prompt lowrank: ``)."""
    for f, meta in option_fields(cls):
        default = _default(f)
        kwargs = dict(meta.argparse)
        text = prefix + (meta.help() if callable(meta.help) else meta.help)
        if recorded(cls, f) == GIVEN:
            shown = meta.default_help if meta.default_help is not None else (" ".join(map(str, default)) if isinstance(default, (list, tuple)) else default)
            kwargs["default"] = None
            text += f" (default: {shown})"
        else:
            kwargs["default"] = default
            if meta.default_help is not None:
                text += f" (default: {meta.default_help})"
        group.add_argument(flag_of(cls, f.name), dest=f.name, help=text, **kwargs)


def record(cls: type[Options], values: Mapping[str, Any]) -> dict[str, Any]:
    """What a run keeps of ``cls``'s options among parsed ``values``: ``always`` ones as they are,
    ``given`` ones only where set (not None). Names ``values`` lacks are left out."""
    kept = {}
    for f, _meta in option_fields(cls):
        if f.name in values and (recorded(cls, f) == ALWAYS or values[f.name] is not None):
            kept[f.name] = values[f.name]
    return kept


def options_from(cls: type[OptionsT], values: Mapping[str, Any]) -> OptionsT:
    """``cls`` with the values kept of its options; one unset (absent or None) is its default."""
    names = {f.name for f, _meta in option_fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names and v is not None})


def given(cls: type[Options], values: Mapping[str, Any], defaults: Mapping[str, Any] = {}) -> list[str]:
    """The options of ``cls`` set in ``values`` to something other than unset or ``defaults``' value."""
    return [f.name for f, _meta in option_fields(cls) if values.get(f.name) is not None and values.get(f.name) != defaults.get(f.name, None)]


def distinct(classes: Iterable[type[Options] | None]) -> list[type[Options]]:
    """``classes`` without None and repeats, in order (several prompts may share one options class)."""
    seen: list[type[Options]] = []
    for cls in classes:
        if cls is not None and cls not in seen:
            seen.append(cls)
    return seen
