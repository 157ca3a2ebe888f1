"""In-memory image sets: uint8 tensors decoded once, plus file lists that decode on demand."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.errors import UserError
from data.cache import load_images


@dataclass
class ImageTensorSet:
    """A labelled image set held as ``uint8 [N, C, H, W]`` images and ``int64 [N]`` labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must be a vector with one label per image")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def inputs(self) -> torch.Tensor:
        """What :class:`~data.loader.BatchLoader` batches."""
        return self.images

    def take(self, indices: torch.Tensor | Sequence[int] | None = None) -> ImageTensorSet:
        if indices is None:
            return self
        indices = torch.as_tensor(indices, dtype=torch.long)
        return ImageTensorSet(self.images[indices], self.labels[indices])


@dataclass
class FeatureSet:
    """Precomputed float inputs ``[N, ...]`` (e.g. a frozen network's features) and ``int64 [N]`` labels.

    Batched like an :class:`ImageTensorSet`, so a method can train on what a frozen part of its
    model computed once instead of recomputing it from the images every epoch.
    """

    inputs: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if not self.inputs.is_floating_point() or self.inputs.dim() < 2 or self.labels.shape != self.inputs.shape[:1]:
            got = f"{self.inputs.dtype} {tuple(self.inputs.shape)} and {tuple(self.labels.shape)}"
            raise ValueError(f"need floating inputs [N, ...] with N labels, got {got}")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class FileImageList:
    """Image files with known labels, decoded (and resized) only for the indices actually used."""

    paths: list[Path]
    labels: torch.Tensor
    size: tuple[int, int]
    label: str = "images"  # names the decode progress bar and the cache file of large sets
    decode: str = "squash"  # how each stored image becomes ``size`` (data.image_io.DECODE_MODES)

    def __post_init__(self) -> None:
        self.labels = torch.as_tensor(self.labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, indices: torch.Tensor | Sequence[int] | None = None) -> ImageTensorSet:
        idx = range(len(self.paths)) if indices is None else [int(i) for i in indices]
        paths = [self.paths[i] for i in idx]
        images = load_images(paths, self.size, label=self.label, decode=self.decode)
        return ImageTensorSet(images, self.labels[list(idx)] if indices is not None else self.labels)


def check_labels(labels: torch.Tensor, num_classes: int, source: str) -> None:
    """Fail with the offending file named rather than train on a label outside the class list."""
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = int(labels[(labels < 0) | (labels >= num_classes)][0])
        raise UserError(f"{source}: label {bad} is outside the {num_classes} classes")


def stratified_subset(
    labels: torch.Tensor, *, count: int | None = None, fraction: float | None = None, per_class: int | None = None, seed: int = 0
) -> torch.Tensor:
    """Seeded class-balanced subset: indices (sorted) keeping each class's share of the set.

    With ``count``, classes get ``count // K`` each and the remainder goes to the lowest class
    indices that still have samples; with ``fraction``, each class keeps ``max(1, round(f * n_c))``;
    with ``per_class`` (K-shot), each class keeps exactly that many and a class with fewer is an
    error. Every class takes the head of one seeded permutation of its samples, so for one seed a
    smaller subset is always part of a larger one, whichever of the three sizes them.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    n = len(labels)
    if sum(x is not None for x in (count, fraction, per_class)) > 1:
        raise ValueError("give one of count, fraction and per_class")
    if count is None and fraction is None and per_class is None:
        return torch.arange(n)
    if fraction is not None and not 0 < fraction <= 1:
        raise UserError(f"fraction must be in (0, 1], got {fraction}")
    if count is not None and count <= 0:
        raise UserError(f"subset size must be positive, got {count}")
    if per_class is not None and per_class <= 0:
        raise UserError(f"--shots must be positive, got {per_class}")
    if count is not None and count >= n:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed)
    classes = torch.unique(labels).tolist()
    by_class = {c: torch.nonzero(labels == c).flatten() for c in classes}
    by_class = {c: idx[torch.randperm(len(idx), generator=gen)] for c, idx in by_class.items()}
    if per_class is not None:
        short = [(c, len(idx)) for c, idx in by_class.items() if len(idx) < per_class]
        if short:
            c, have = short[0]
            raise UserError(f"--shots {per_class}: class {c} has only {have} training images ({len(short)} class(es) have fewer than {per_class})")
        quota = {c: per_class for c in classes}
    elif fraction is not None:
        quota = {c: max(1, int(round(fraction * len(idx)))) for c, idx in by_class.items()}
    else:
        quota = _balanced_quota({c: len(idx) for c, idx in by_class.items()}, count)
    chosen = torch.cat([by_class[c][: quota[c]] for c in classes])
    return torch.sort(chosen).values


def _balanced_quota(available: dict[int, int], count: int) -> dict[int, int]:
    quota = {c: 0 for c in available}
    remaining = count
    while remaining > 0:
        open_classes = [c for c in sorted(available) if quota[c] < available[c]]
        if not open_classes:
            break
        share = max(1, remaining // len(open_classes))
        for c in open_classes:
            take = min(share, available[c] - quota[c], remaining)
            quota[c] += take
            remaining -= take
            if remaining == 0:
                break
    return quota


def to_uint8_nchw(array: np.ndarray) -> torch.Tensor:
    """``uint8 [N, H, W, C]`` numpy array to a contiguous ``[N, C, H, W]`` tensor."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
