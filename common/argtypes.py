"""Argument types that check a numeric flag where it is parsed.

Each is an ``argparse`` ``type=`` function: a value out of range fails with
``argument --flag: must be ...`` before anything runs, instead of training zero epochs, falling
back to a default or ending in a traceback deep inside the optimizer. They live on the ground
floor so that method families (``algorithms/methods``) can use them for their own flags.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer ``>= low`` (and ``<= high`` if given): counts, sizes, intervals, indices."""
    expected = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"

    def parse(text: str) -> int:
        value = _number(text, int)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {value}")
        return value

    parse.__name__ = expected
    return parse


def float_in(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """A finite number in the interval between ``low`` and ``high``; an ``_open`` end excludes it."""
    if math.isinf(high):
        interval = f"{'>' if low_open else '>='} {low:g}"
    else:
        interval = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(text: str) -> float:
        value = _number(text, float)
        if value < low or (low_open and value == low) or value > high or (high_open and value == high):
            raise argparse.ArgumentTypeError(f"must be {interval}, got {value:g}")
        return value

    parse.__name__ = f"number {interval}"
    return parse


positive_int = int_in(1)
non_negative_int = int_in(0)
positive_float = float_in(0.0, low_open=True)  # learning rates, C, decay factors
non_negative_float = float_in(0.0)  # weight decay, momentum
open_fraction = float_in(0.0, 1.0, low_open=True, high_open=True)  # (0, 1)
fraction = float_in(0.0, 1.0, low_open=True)  # (0, 1]
unit_interval = float_in(0.0, 1.0)  # [0, 1]


def yes_no(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); anything else is an error."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def positive_int_or(word: str, what: str) -> Callable[[str], int | str]:
    """A positive number of ``what`` or the literal ``word`` (``--micro-batch 32|auto``, ``--runs-per-gpu 2|auto``)."""

    def parse(text: str) -> int | str:
        if text == word:
            return text
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"expected a positive number of {what} or {word}, got {text!r}")
        return value

    parse.__name__ = f"{what} or {word}"
    return parse
