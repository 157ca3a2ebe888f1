"""Passes without gradients: accuracy, outputs computed once, and which accuracy a run reports.

Every pass here sees each sample once and returns the same numbers at any batch size (up to
float rounding); they run at the evaluation batch size, on the device, reduced across ranks.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch

from algorithms import micro_batching
from algorithms.mappings.base import accumulate_statistic, top1_one_hot
from algorithms.runtime import Runtime
from algorithms.settings import RunConfig
from common import preemption, progress
from common.errors import UserError
from data.loader import BatchLoader, fits_on_device, to_float01
from data.registry import TargetData
from data.tensors import FeatureSet, ImageTensorSet

BatchFn = Callable[[torch.Tensor], torch.Tensor]


def evaluation_batch_size(config: RunConfig, batch_size: int) -> int:
    """Samples per forward pass without gradients: ``--eval-batch-size`` (twice the batch by
    default), at most ``--micro-batch`` when that is a number."""
    size = config.eval_batch_size or 2 * batch_size
    return min(size, config.micro_batch) if isinstance(config.micro_batch, int) else size


# ---------------------------------------------------------------------------------------------
# Reported accuracies

PROTOCOL = {
    "best_test_acc": "paper protocol: the highest test accuracy over all epochs (epoch chosen on test; best.pth)",
    "final_test_acc": "test accuracy after the last epoch",
    "val_selected_test_acc": "test accuracy at the epoch with the highest validation accuracy (ties: earliest epoch)",
}


def val_selection(history: list[dict]) -> dict:
    """Test accuracy of the epoch chosen on validation (earliest of ties); empty without a val split."""
    rows = [r for r in history if r.get("val_acc") is not None]
    if not rows:
        return {}
    best = max(rows, key=lambda r: (r["val_acc"], -r["epoch"]))
    return {"val_selected_test_acc": best["test_acc"], "val_selected_epoch": best["epoch"], "best_val_acc": best["val_acc"]}


@torch.no_grad()
def top1_accuracy(model, batches, runtime: Runtime, source_counts: torch.Tensor | None = None) -> float:
    """Top-1 accuracy (%) of ``model`` over uint8 ``(images, labels)`` batches, summed across ranks.

    With ``source_counts [S, K]`` the model must accept ``return_source=True``; the source top-1
    prediction of every sample is then counted against its label (the mapping heatmap). The
    network body runs at ``--eval-precision``; logits and the mapping are float32 in any case.
    """
    correct = torch.zeros((), device=runtime.device, dtype=torch.long)
    total = torch.zeros((), device=runtime.device, dtype=torch.long)
    for images, labels in batches:
        with runtime.eval_autocast():
            if source_counts is None:
                logits = model(to_float01(images))
            else:
                logits, source = model(to_float01(images), return_source=True)
                accumulate_statistic(source_counts, top1_one_hot(source.float()), labels)
        correct += (logits.argmax(dim=1) == labels).sum()
        total += labels.shape[0]
    if source_counts is not None:
        runtime.all_reduce_sum(source_counts)
    totals = runtime.all_reduce_sum(torch.stack([correct, total]))
    return 100.0 * float(totals[0]) / max(1, int(totals[1]))


@torch.no_grad()
def stacked_outputs(
    fn: BatchFn, loader: BatchLoader, runtime: Runtime, resident: bool | None = None, precision: str | None = None, desc: str | None = None
) -> torch.Tensor:
    """``fn`` of every batch of ``loader``, in order, as one float32 tensor; computed at ``precision``
    (default: the run's training precision).

    It stays on the device where it fits (:func:`~data.loader.fits_on_device`, ``resident`` forces
    the answer); otherwise it fills host memory (pinned for CUDA) batch by batch. With ``desc``,
    a progress bar (main process, terminal only).
    """
    out, start = None, 0
    batches = loader if desc is None else progress.bar(loader, desc=desc, total=len(loader), unit="batch", enabled=runtime.is_main)
    for images, _ in preemption.stoppable(batches, f"during {desc or 'a precomputing'} pass", len(loader)):
        with runtime.autocast(precision):
            y = fn(to_float01(images)).float()
        if out is None:
            shape = (loader.shard_size, *y.shape[1:])
            on_device = fits_on_device(math.prod(shape) * y.element_size(), runtime.device, resident)
            pin = not on_device and runtime.device.type == "cuda"
            out = torch.empty(shape, device=runtime.device if on_device else "cpu", pin_memory=pin)
        out[start : start + len(y)].copy_(y)
        start += len(y)
    if out is None:
        raise UserError("cannot precompute outputs of an empty split")
    return out


def precompute_inputs(
    fn: BatchFn, data: TargetData, runtime: Runtime, batch_size: int, resident: bool | None = None, desc: str = "precompute"
) -> TargetData:
    """``data`` with each split's images replaced by ``fn`` of them, computed once by every rank
    (training batches are drawn from the whole set, so each rank needs all of it). The training
    split is computed at the training precision, the others at the evaluation precision, as the
    engine would compute them each epoch."""

    def outputs(split: ImageTensorSet, name: str, precision: str | None) -> FeatureSet:
        loader = BatchLoader(split, batch_size, runtime.device, shuffle=False, resident=resident)
        return FeatureSet(stacked_outputs(fn, loader, runtime, resident, precision, desc=f"{desc} ({name})"), split.labels)

    evaluated = runtime.eval_precision or runtime.precision
    val = None if data.val is None else outputs(data.val, "val", evaluated)
    return replace(data, train=outputs(data.train, "train", runtime.precision), test=outputs(data.test, "test", evaluated), val=val)


def auto_eval_batch(model, train_loader: BatchLoader, data: TargetData, runtime: Runtime, start: int, note, info: dict) -> int:
    """``--eval-batch-size`` unset (and no ``--micro-batch``, which bounds it): on CUDA the largest
    batch whose no-grad pass fits (results do not depend on it); elsewhere ``start``, twice the
    training batch. The probed size is noted and recorded in ``info`` (results.json)."""
    limit = max(len(data.train), len(data.test), len(data.val) if data.val is not None else 0)

    @torch.no_grad()
    def probe(n: int) -> None:  # one evaluation forward pass on n samples (training images repeated), leaving no trace
        images, _ = next(iter(train_loader))
        model.eval()
        with runtime.eval_autocast():
            model(to_float01(images[torch.arange(n, device=images.device) % len(images)]), return_source=True)

    probed = micro_batching.auto_eval_batch(probe, runtime.device, start, limit)
    if probed is None:
        return start
    note(f"--eval-batch-size auto: {probed} on {runtime.device} (the largest no-grad batch that fits, probed)")
    info["eval_batch_size"] = probed
    return probed
