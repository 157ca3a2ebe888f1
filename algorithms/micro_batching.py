"""Training steps in chunks (``--micro-batch``): the whole batch's update in a fraction of the memory.

A step's loss is the mean over the batch, so its gradient is the sum over chunks of each chunk's
mean-loss gradient weighted by ``chunk size / batch size``: accumulating those before the
optimizer step gives the full-batch update, up to float rounding, as long as nothing that trains
looks at the batch as a whole. A frozen network runs in eval mode, so for the prompt methods
this holds; batch norms in training mode (full fine-tuning) normalise over whatever they are
given, and :func:`batch_statistics_modules` finds them.

``--micro-batch auto`` picks the largest chunk that fits on a CUDA device from a few probe steps
(:func:`largest_fitting_chunk` over :func:`probe_fits`). The probe reads memory through a small
signal object (:class:`CudaMemory` on CUDA), so its logic runs anywhere with another signal.

The no-gradient passes (the mapping's statistics, evaluation) compute each sample on its own, so
their results do not depend on their batch; on CUDA the automatic ``--eval-batch-size`` runs them at
the largest batch that fits (:func:`largest_eval_batch`), a fraction of the steps at batch 256.
With several runs on one GPU (``VP_RUNS_PER_GPU``, :data:`cfg.RUNS_PER_GPU`) each probe plans
with its share of the free memory.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

import cfg
from common.errors import UserError

# share of the device's free memory a probed chunk may use: the rest absorbs what the probe does
# not see (allocator fragmentation, the optimizer's first step, other processes growing)
HEADROOM = 0.9
# the automatic evaluation batch stops here: it bounds the probe's steps and what a wrong estimate costs
MAX_EVAL_BATCH = 4096
BATCH_STATISTICS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class MemorySignal(Protocol):
    """What the probe needs to know about device memory around one probe step."""

    def start(self) -> None:
        """Called before a step: forget the last peak."""

    def within_budget(self) -> bool:
        """After a step that did not fail: whether its peak leaves enough room."""


class CudaMemory:
    """Peak allocated memory of one CUDA device against ``HEADROOM`` of what was free before the
    step, divided among ``share`` runs on the device."""

    def __init__(self, device: torch.device, share: int = 1) -> None:
        self.device = device
        self.share = max(1, share)
        self.budget = 0

    def start(self) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        free, _ = torch.cuda.mem_get_info(self.device)
        self.budget = torch.cuda.memory_allocated(self.device) + int(HEADROOM * free / self.share)

    def within_budget(self) -> bool:
        torch.cuda.synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device) <= self.budget


def memory_signal(device: torch.device) -> MemorySignal | None:
    """The signal for ``device``, or None where the probe cannot measure (the CPU: memory is the host's)."""
    return CudaMemory(device, cfg.RUNS_PER_GPU) if device.type == "cuda" else None


def chunk_sizes(batch_size: int) -> list[int]:
    """Every chunk size that splits ``batch_size`` into ``k`` nearly equal chunks, largest first."""
    return sorted({math.ceil(batch_size / k) for k in range(1, batch_size + 1)}, reverse=True)


def largest_fitting_chunk(batch_size: int, fits: Callable[[int], bool]) -> int:
    """The largest of :func:`chunk_sizes` for which ``fits`` holds, by bisection.

    ``fits`` must be monotone (if a chunk fits, every smaller one does); the whole batch is tried
    first, so a batch that fits costs one probe.
    """
    sizes = chunk_sizes(batch_size)
    if fits(sizes[0]):
        return sizes[0]
    if not fits(sizes[-1]):
        raise UserError("--micro-batch auto: not even one sample's training step fits in the device's memory")
    fails, works = 0, len(sizes) - 1
    while works - fails > 1:
        middle = (fails + works) // 2
        if fits(sizes[middle]):
            works = middle
        else:
            fails = middle
    return sizes[works]


def largest_eval_batch(start: int, limit: int, fits: Callable[[int], bool]) -> int:
    """The largest batch of ``start * 2**k`` (``limit`` itself last) for which ``fits`` holds,
    doubling from ``start``; below ``start`` (it does not fit), halving. ``fits`` must be monotone."""
    size = max(1, min(start, limit))
    if not fits(size):
        while size > 1:
            size //= 2
            if fits(size):
                return size
        raise UserError("--eval-batch-size auto: not even one sample's evaluation fits in the device's memory")
    while size < limit and fits(bigger := min(limit, 2 * size)):
        size = bigger
    return size


def auto_eval_batch(step: Callable[[int], None], device: torch.device, start: int, limit: int) -> int | None:
    """The no-gradient batch for ``device`` from probe passes ``step(n)`` (:func:`largest_eval_batch`,
    at most :data:`MAX_EVAL_BATCH`), or None where memory cannot be probed (the CPU: keep ``start``)."""
    memory = memory_signal(device)
    if memory is None:
        return None
    return largest_eval_batch(start, min(limit, MAX_EVAL_BATCH), probe_fits(step, memory))


def probe_fits(step: Callable[[int], None], memory: MemorySignal) -> Callable[[int], bool]:
    """``fits(n)``: whether one training step on ``n`` samples runs without running out of memory
    and within the signal's budget."""

    def fits(n: int) -> bool:
        memory.start()
        try:
            step(n)
        except torch.OutOfMemoryError:
            return False
        return memory.within_budget()

    return fits


def batch_statistics_modules(model: nn.Module) -> list[str]:
    """Names of the modules that normalise over the batch as the model is now (training mode)."""
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, BATCH_STATISTICS) and (m.training or not m.track_running_stats)
    ]

