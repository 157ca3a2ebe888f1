"""A fingerprint of the exact samples a run reads, so a run is never continued on other data.

The fingerprint hashes, split by split, every sample the run uses (after subsetting) with its
label, plus the class names and the decode size:

- image files (folder datasets, CoOp, GTSRB, ImageNet variants): each file's path relative to the
  data root and its size in bytes. A copy of the dataset elsewhere (``cp -r``, ``rsync``) has the
  same fingerprint; an added, removed, renamed or resized file, or another subset, changes it.
  Modification times are left out so that a copy counts as the same data; an image rewritten in
  place with exactly the same byte size is not detected.
- decoded tensors (CIFAR and SVHN pickles/matrices, ABIDE): every pixel byte and label.

The cost is a ``stat`` per file or one pass of SHA-256 over the tensors (about 0.2 s for
CIFAR-10's 150 MB of training images on one core).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from common.errors import UserError
from data.tensors import FileImageList, ImageTensorSet

_ROWS_PER_CHUNK = 4096  # tensors are hashed in slices, never copied whole


def data_fingerprint(
    root: Path, class_names: Sequence[str], image_size: tuple[int, int], splits: Sequence[tuple[str, FileImageList | ImageTensorSet, torch.Tensor | None]]
) -> str:
    """``sha256:<16 hex>`` over ``splits``: ``(name, set, indices used or None for all)``."""
    digest = hashlib.sha256()
    digest.update(f"classes {list(class_names)!r}\nsize {tuple(image_size)}\n".encode())
    base = os.path.abspath(root)
    for name, split, indices in splits:
        idx = torch.arange(len(split)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
        digest.update(f"split {name} {len(idx)}\n".encode())
        digest.update(split.labels[idx].to(torch.int64).numpy().tobytes())
        if isinstance(split, FileImageList):
            _hash_files(digest, [split.paths[int(i)] for i in idx], base)
        elif isinstance(split, ImageTensorSet):
            _hash_tensor(digest, split.images, idx if indices is not None else None)
        else:
            raise TypeError(f"cannot fingerprint a {type(split).__name__}")
    return "sha256:" + digest.hexdigest()[:16]


def _hash_files(digest, paths: list[Path], base: str) -> None:
    for path in paths:
        try:
            size = os.stat(path).st_size
        except FileNotFoundError as exc:
            raise UserError(f"image file not found: {path}") from exc
        digest.update(f"{os.path.relpath(os.path.abspath(path), base)}\t{size}\n".encode())


def _hash_tensor(digest, images: torch.Tensor, indices: torch.Tensor | None) -> None:
    count = len(images) if indices is None else len(indices)
    for start in range(0, count, _ROWS_PER_CHUNK):
        rows = slice(start, start + _ROWS_PER_CHUNK)
        chunk = images[rows] if indices is None else images[indices[rows]]
        digest.update(chunk.contiguous().numpy())
