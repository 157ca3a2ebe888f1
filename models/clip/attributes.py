"""Attribute texts of AttrVR (Cai et al., ICLR 2025): reading, filtering and sampling them per class.

A file is one JSON object ``{"<class name>": [sentence, ...]}``, one file of descriptive and one
of distinctive attributes per dataset, named ``<stem>_des.json`` and ``<stem>_dist.json`` (the
stems of the released attribute folder, e.g. ``oxford_pets`` for ``--dataset oxfordpets``). Keys
are matched to the dataset's class names with ``_`` read as a space and case ignored (the
project reads CoOp's ``american_bulldog`` as ``american bulldog``). Per class, sentences shorter
than :data:`MIN_CHARS` (generated fragments, a lone ".") are dropped, and ``m`` are drawn from
the rest: without replacement when at least ``m`` remain, with replacement otherwise.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from common.errors import UserError

MIN_CHARS = 20
KINDS = {"descriptive": "des", "distinctive": "dist"}  # kind -> file suffix
# --dataset name -> the stem of its attribute files, where the two differ
# (the released caltech101, fgvc and resisc45 files wait for datasets of those names)
ATTRIBUTE_STEMS = {"flowers102": "oxford_flowers", "oxfordpets": "oxford_pets", "stanfordcars": "stanford_cars"}


def attribute_stem(dataset: str) -> str:
    return ATTRIBUTE_STEMS.get(dataset, dataset)


def stem_file(folder: str | Path, dataset: str, suffix: str) -> Path:
    """``folder/<stem>_<suffix>.json``, the released files' naming (``suffix``: des, dist, cse_1, ...)."""
    return Path(folder).expanduser() / f"{attribute_stem(dataset)}_{suffix}.json"


def attribute_file(kind: str, dataset: str, folder: str | Path | None, file: str | Path | None) -> Path:
    """The file of ``kind`` (descriptive, distinctive): ``file`` if given, else ``folder/<stem>_<suffix>.json``."""
    if file is not None:
        return Path(file).expanduser()
    if folder is None:
        raise UserError(
            f"AttrVR reads class attributes: pass --attributes DIR (holding <dataset>_des.json and <dataset>_dist.json) "
            f"or --{kind}-attributes FILE"
        )
    return stem_file(folder, dataset, KINDS[kind])


def _key(name: str) -> str:
    return name.replace("_", " ").strip().casefold()


def read_attributes(path: Path, class_names: Sequence[str], kind: str = "attributes") -> list[list[str]]:
    """The sentences of every class in ``class_names`` order, as written in ``path``.

    A missing or unreadable file, one that is not an object of sentence lists, an empty one,
    and classes it does not name are each one error naming what and where.
    """
    if not path.is_file():
        raise UserError(f"{kind} attribute file not found: {path}")
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {kind} attribute file {path}: {exc}") from exc
    if not isinstance(content, dict) or not all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in content.values()):
        raise UserError(f"{kind} attribute file {path} must be one JSON object {{class name: [sentences]}}")
    if not content:
        raise UserError(f"{kind} attribute file {path} is empty (no class)")
    by_key = {_key(name): sentences for name, sentences in content.items()}
    missing = [name for name in class_names if _key(name) not in by_key]
    if missing:
        shown = ", ".join(repr(n) for n in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise UserError(f"{kind} attribute file {path} has no entry for {len(missing)} of {len(class_names)} classes: {shown}")
    return [by_key[_key(name)] for name in class_names]


def usable_sentences(sentences: Sequence[str], min_chars: int = MIN_CHARS) -> list[str]:
    """The sentences, stripped of surrounding white space, that keep at least ``min_chars`` characters."""
    return [s.strip() for s in sentences if len(s.strip()) >= min_chars]


def sample_attributes(
    per_class: Sequence[Sequence[str]], class_names: Sequence[str], m: int, generator: torch.Generator, kind: str = "attributes", source: str = ""
) -> list[list[str]]:
    """``m`` usable sentences per class, drawn from ``generator`` (with replacement only when fewer than ``m`` remain)."""
    empty = [name for name, sentences in zip(class_names, per_class) if not usable_sentences(sentences)]
    if empty:
        where = f" in {source}" if source else ""
        raise UserError(f"no {kind} attribute of at least {MIN_CHARS} characters{where} for: {', '.join(repr(n) for n in empty[:10])}")
    drawn = []
    for sentences in per_class:
        usable = usable_sentences(sentences)
        if len(usable) >= m:
            index = torch.randperm(len(usable), generator=generator)[:m]
        else:
            index = torch.randint(len(usable), (m,), generator=generator)
        drawn.append([usable[i] for i in index.tolist()])
    return drawn


def draw_attributes(path: Path, class_names: Sequence[str], m: int, generator: torch.Generator, kind: str = "attributes") -> list[list[str]]:
    """:func:`read_attributes` then :func:`sample_attributes`: ``m`` sentences per class of ``path``."""
    return sample_attributes(read_attributes(path, class_names, kind), class_names, m, generator, kind, str(path))
