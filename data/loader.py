"""Batches of uint8 images straight from tensors: no per-sample decoding, no worker processes.

The whole uint8 set lives on the device when it fits (CIFAR-10 train is 150 MB); otherwise it
stays in pinned host memory and each batch is gathered and copied one step ahead, on CUDA on a
side stream (the consumer's stream waits for that batch's copy alone).
Precomputed float inputs (:class:`~data.tensors.FeatureSet`) are batched the same way.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from common.seeding import epoch_generator
from data.cache import is_memory_mapped, release_pages
from data.tensors import FeatureSet, ImageTensorSet

# a gathered batch: (images, labels) on the device, the event its copy records on CUDA (None
# elsewhere) and the pinned host tensors the copy reads
Fetched = tuple[torch.Tensor, torch.Tensor, "torch.cuda.Event | None", "tuple[torch.Tensor, torch.Tensor] | None"]

# Sets up to this size are copied to GPU memory once; larger ones stream from pinned memory.
DEVICE_RESIDENT_BYTES = 4 * 2**30
# A memory-mapped set read on the host gives its pages back after about this many bytes of batches.
RELEASE_EVERY_BYTES = 256 * 2**20


def fits_on_device(nbytes: int, device: torch.device, resident: bool | None = None) -> bool:
    """Whether a set of ``nbytes`` is kept whole on ``device`` (``resident`` forces the answer)."""
    if resident is not None:
        return resident
    return device.type == "cpu" or nbytes <= DEVICE_RESIDENT_BYTES


class BatchLoader:
    """Iterates ``(uint8 images [B, C, H, W], int64 labels [B])`` on ``device`` (``float [B, ...]`` for a FeatureSet).

    Training order is a permutation drawn from ``(seed, epoch)`` alone, so a resumed run sees the
    same batches. With several ranks each takes an equal, disjoint share of every permutation
    (training pads by repeating a few samples so every rank runs the same number of steps;
    evaluation never pads, so counts stay exact).
    """

    def __init__(
        self,
        data: ImageTensorSet | FeatureSet,
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
        inputs = data.inputs
        self.resident = resident = fits_on_device(inputs.numel() * inputs.element_size(), device, resident)
        # a memory-mapped cache is read batch by batch and never copied whole into host memory
        self.mapped = is_memory_mapped(inputs)
        if resident:
            self.images = inputs.to(device)
            self.labels = data.labels.to(device)
            if self.mapped and device.type != "cpu":
                release_pages(inputs)
        else:
            pin = device.type == "cuda" and not self.mapped and not inputs.is_pinned()
            self.images = inputs.pin_memory() if pin else inputs
            self.labels = data.labels
        self.num_samples = len(data)
        self._order: tuple[int, torch.Tensor] | None = None  # (epoch, this rank's visiting order)
        self._host_mapped = self.mapped and self.images.device.type == "cpu"
        self._copy_stream: torch.cuda.Stream | None = None  # created on the first streamed CUDA batch
        self._release_every = max(1, RELEASE_EVERY_BYTES // max(1, batch_size * inputs[0].numel() * inputs.element_size()))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        """This rank's dataset indices in visiting order for the current epoch (CPU int64)."""
        if self._order is not None and self._order[0] == self.epoch:
            return self._order[1]
        self._order = (self.epoch, self._draw_indices())
        return self._order[1]

    def batch_indices(self, step: int) -> torch.Tensor:
        """The dataset indices (CPU int64) of the samples of this rank's batch ``step`` of the current
        epoch: what keys each sample's augmentation stream (:class:`~data.augment_draws.AugmentDraws`)."""
        return self._indices()[step * self.batch_size : (step + 1) * self.batch_size]

    def _draw_indices(self) -> torch.Tensor:
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
        else:  # the next batch is gathered and copied while the consumer computes on this one
            pending = self._fetch(batches[0]) if len(batches) else None
            for i in range(len(batches)):
                current = pending
                pending = self._fetch(batches[i + 1]) if i + 1 < len(batches) else None
                yield self._hand_over(current)
                self._release_pages(i)
        if self._host_mapped:
            release_pages(self.images)

    def _release_pages(self, step: int) -> None:
        if self._host_mapped and (step + 1) % self._release_every == 0:
            release_pages(self.images)

    def _fetch(self, idx: torch.Tensor) -> Fetched:
        images = self.images.index_select(0, idx)
        labels = self.labels.index_select(0, idx)
        if self.device.type != "cuda":
            return images.to(self.device), labels.to(self.device), None, None
        # CUDA: copy from pinned memory on a side stream, so the copy runs beside the consumer's
        # kernels on the default stream instead of queueing behind them (issue 23)
        host = images.pin_memory(), labels.pin_memory()
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            on_device = tuple(t.to(self.device, non_blocking=True) for t in host)
            ready = torch.cuda.Event()
            ready.record(self._copy_stream)
        return on_device[0], on_device[1], ready, host  # the pinned host tensors live until the copy is waited for

    def _hand_over(self, fetched: Fetched) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch, safe to use on the consumer's (current) stream."""
        images, labels, ready, _host = fetched
        if ready is not None:
            consumer = torch.cuda.current_stream(self.device)
            consumer.wait_event(ready)
            # memory allocated on the copy stream and used on the consumer's: not reused before the consumer is done
            images.record_stream(consumer)
            labels.record_stream(consumer)
        return images, labels


def to_float01(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float32 ``[0, 1]``, on whatever device the batch already is.

    Floating batches (precomputed features) are already model inputs and pass through unchanged.
    """
    if images.is_floating_point():
        return images
    return images.float().mul_(1.0 / 255.0)
