"""Fetch a dataset through torchvision's own downloader, turning network failures into one line.

A download that fails leaves nothing behind: the folders it created (``--data-path`` of a copied
command that does not exist yet, say) and the partial files it wrote are removed.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from common.errors import UserError


def download_with_torchvision(class_name: str, root: Path, name: str, splits: tuple[dict, ...]) -> None:
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, class_name)
    created = first_missing(root)
    before = set(os.listdir(root)) if created is None else set()
    try:
        root.mkdir(parents=True, exist_ok=True)
        for kwargs in splits:
            dataset_class(str(root), download=True, **kwargs)
    except BaseException as exc:
        remove_new(root, created, before)
        if not isinstance(exc, Exception):  # Ctrl-C, a stop signal: cleaned up, then on its way
            raise
        # network errors come as URLError, OSError, RuntimeError, ...
        raise UserError(
            f"dataset {name!r} is missing under {root} and could not be downloaded ({type(exc).__name__}: {exc}); "
            f"place the files there by hand (layouts and sources: docs/datasets.md), or set VP_DOWNLOAD=0 to skip downloading"
        ) from exc


def first_missing(path: Path) -> Path | None:
    """The outermost folder on ``path`` that does not exist yet (the one ``mkdir(parents=True)``
    would create first), or None where ``path`` exists."""
    path = Path(os.path.abspath(path))
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def remove_new(root: Path, created: Path | None, before: set[str]) -> None:
    """Undo a failed download: the folders it created, or else the entries it added to ``root``."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    for entry in set(os.listdir(root)) - before:
        path = root / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
