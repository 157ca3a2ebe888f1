"""Batches of uint8 images straight from tensors: no per-sample decoding, no worker processes.

The whole uint8 set lives on the device when it fits (CIFAR-10 train is 150 MB); otherwise it
stays in pinned host memory and each batch is gathered and copied asynchronously one step ahead.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch

from algorithms.runtime import epoch_generator
from data.cache import is_memory_mapped, release_pages
from data.tensors import ImageTensorSet

# Sets up to this size are copied to GPU memory once; larger ones stream from pinned memory.
DEVICE_RESIDENT_BYTES = 4 * 2**30
# A memory-mapped set read on the host gives its pages back after about this many bytes of batches.
RELEASE_EVERY_BYTES = 256 * 2**20


class BatchLoader:
    """Iterates ``(uint8 images [B, C, H, W], int64 labels [B])`` on ``device``.

    Training order is a permutation drawn from ``(seed, epoch)`` alone, so a resumed run sees the
    same batches. With several ranks each takes an equal, disjoint share of every permutation
    (training pads by repeating a few samples so every rank runs the same number of steps;
    evaluation never pads, so counts stay exact).
    """

    def __init__(
        self,
        data: ImageTensorSet,
        batch_size: int,
        device: torch.device,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        resident: bool | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        nbytes = data.images.numel()
        if resident is None:
            resident = device.type == "cpu" or nbytes <= DEVICE_RESIDENT_BYTES
        self.resident = resident
        # a memory-mapped cache is read batch by batch and never copied whole into host memory
        self.mapped = is_memory_mapped(data.images)
        if resident:
            self.images = data.images.to(device)
            self.labels = data.labels.to(device)
            if self.mapped and device.type != "cpu":
                release_pages(data.images)
        else:
            pin = device.type == "cuda" and not self.mapped
            self.images = data.images.pin_memory() if pin else data.images
            self.labels = data.labels
        self.num_samples = len(data)
        self._host_mapped = self.mapped and self.images.device.type == "cpu"
        self._release_every = max(1, RELEASE_EVERY_BYTES // max(1, batch_size * data.images[0].numel()))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        if self.shuffle:
            order = torch.randperm(self.num_samples, generator=epoch_generator(self.seed, self.epoch))
        else:
            order = torch.arange(self.num_samples)
        if self.world_size == 1:
            return order
        if self.shuffle:
            per_rank = math.ceil(self.num_samples / self.world_size)
            padding = per_rank * self.world_size - self.num_samples
            order = torch.cat([order, order[:padding]])
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        return math.ceil(self.shard_size / self.batch_size)

    @property
    def shard_size(self) -> int:
        """Samples this rank visits per epoch."""
        if self.world_size == 1:
            return self.num_samples
        if self.shuffle:
            return math.ceil(self.num_samples / self.world_size)
        return len(range(self.rank, self.num_samples, self.world_size))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._indices()
        batches = order.split(self.batch_size)
        if self.resident:
            order_dev = order.to(self.device)
            for step, idx in enumerate(order_dev.split(self.batch_size)):
                yield self.images.index_select(0, idx), self.labels.index_select(0, idx)
                self._release_pages(step)
        else:
            pending = self._fetch(batches[0]) if len(batches) else None
            for i in range(len(batches)):
                current = pending
                pending = self._fetch(batches[i + 1]) if i + 1 < len(batches) else None
                yield current
                self._release_pages(i)
        if self._host_mapped:
            release_pages(self.images)

    def _release_pages(self, step: int) -> None:
        if self._host_mapped and (step + 1) % self._release_every == 0:
            release_pages(self.images)

    def _fetch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.images.index_select(0, idx)
        labels = self.labels.index_select(0, idx)
        if self.device.type == "cuda":
            images = images.pin_memory()
        return images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


def to_float01(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float32 ``[0, 1]``, on whatever device the batch already is."""
    return images.float().mul_(1.0 / 255.0)
