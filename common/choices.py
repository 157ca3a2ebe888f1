"""The names a flag accepts, read from a registry: one line of help each, aliases, and one check.

A registry hands out a :class:`Choices`; the command line builds ``--help`` from it and checks a
name with :meth:`Choices.resolve` while parsing, before any data, network or weights load. The
listing is read when used, so a name registered later (a plug-in, a test) is listed and accepted
with nothing else to change.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from common.errors import UserError


def first_line(obj: object) -> str:
    """The first line of ``obj``'s docstring, without a trailing period: a plug-in's one-line description."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0].strip().rstrip(".") if doc else ""


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")  # :func:`name`, :data:`~pkg.name`
_LITERAL = re.compile(r"``([^`]+)``")
_DOCSTRING_POINTER = re.compile(r"\s*\([^()]*\bdocstring\b[^()]*\)")  # "(see the module docstring)"


def plain_text(text: str) -> str:
    """A docstring line as ``--help`` shows it: reST markup removed, pointers to docstrings dropped
    (help is read in a terminal, where neither renders nor leads anywhere)."""
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1] if m.group(0).count("~") else m.group(1), text)
    return _DOCSTRING_POINTER.sub("", _LITERAL.sub(r"\1", text)).strip()


def _empty() -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Choices:
    """What ``--<flag> NAME`` accepts: registered names, their aliases, and optionally an open set of others."""

    what: str  # "dataset", "mapping", ...: the word used in help and errors
    entries: Callable[[], Mapping[str, str]]  # canonical name -> one-line description, read when used
    aliases: Callable[[], Mapping[str, str]] = field(default=_empty)  # alias -> canonical name
    others: str = ""  # help: which names beyond the listed ones are accepted
    accepts: Callable[[str], bool] | None = None  # whether a name beyond the listed ones is accepted

    def names(self) -> list[str]:
        return sorted(self.entries())

    def resolve(self, name: str) -> str:
        """The canonical name for ``name`` (an alias maps to its name); a one-line error otherwise."""
        entries, aliases = self.entries(), self.aliases()
        if name in entries:
            return name
        if name in aliases:
            return aliases[name]
        if self.accepts is not None and self.accepts(name):
            return name
        listed = ", ".join(self.names())
        beyond = f"; or {self.others}" if self.others else ""
        raise UserError(f"unknown {self.what} {name!r}; choose from {listed}{beyond}")

    def help(self, summary: str) -> str:
        """``summary``, then one line per name (``name (also: alias)  description``), then the others.

        Lines start with two spaces so the command line's help formatter keeps them as lines.
        """
        entries, aliases = self.entries(), self.aliases()
        also: dict[str, list[str]] = {}
        for alias, name in sorted(aliases.items()):
            also.setdefault(name, []).append(alias)
        lines = [summary]
        for name in self.names():
            label = name + (f" (also: {', '.join(also[name])})" if name in also else "")
            lines.append(f"  {label}: {plain_text(entries[name]) or '-'}")
        if self.others:
            lines.append(f"  or {self.others}")
        return "\n".join(lines)
