"""Passes without gradients: top-1, top-5 and loss, outputs computed once, and which accuracy a run reports.

Every pass here sees each sample once and returns the same numbers at any batch size (up to
float rounding); they run at the evaluation batch size, on the device, reduced across ranks.

Every split reports top-1 accuracy (``acc``), top-5 accuracy (``top5``) and the mean
cross-entropy of the target logits (``loss``), in %. Top-5 counts a sample right when its label
is among its ``min(5, K)`` highest logits, so with five classes or fewer it is 100 %; ties in
the logits are broken as ``torch.topk`` breaks them (the order of the model's outputs).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.nn.functional as F

from algorithms import micro_batching
from algorithms.runtime import Runtime
from algorithms.settings import RunConfig
from common import preemption, progress
from common.errors import UserError
from data.loader import BatchLoader, fits_on_device, to_float01
from data.registry import TargetData
from data.tensors import FeatureSet, ImageTensorSet

BatchFn = Callable[[torch.Tensor], torch.Tensor]
# sees each evaluation batch: (target logits [n, K], the model's other outputs or None, labels [n])
Observer = Callable[[torch.Tensor, "torch.Tensor | None", torch.Tensor], None]
TOP_K = 5  # the second accuracy every split reports (top-min(5, K))


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
    "top5": f"top-5 accuracy: the label among the min({TOP_K}, K) highest logits (100 % with {TOP_K} classes or fewer)",
    "loss": "mean cross-entropy of the target logits over the split",
}


def val_selection(history: list[dict]) -> dict:
    """Test accuracy of the epoch chosen on validation (earliest of ties); empty without a val split."""
    rows = [r for r in history if r.get("val_acc") is not None]
    if not rows:
        return {}
    best = max(rows, key=lambda r: (r["val_acc"], -r["epoch"]))
    chosen = {"val_selected_test_acc": best["test_acc"], "val_selected_epoch": best["epoch"], "best_val_acc": best["val_acc"]}
    return chosen | {f"val_selected_test_{m}": best[f"test_{m}"] for m in ("top5", "loss") if best.get(f"test_{m}") is not None}


# ---------------------------------------------------------------------------------------------
# Top-1, top-5, loss


def correct_in_top(logits: torch.Tensor, labels: torch.Tensor, k: int = TOP_K) -> torch.Tensor:
    """How many samples have their label among their ``min(k, K)`` highest logits."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == labels.unsqueeze(1)).any(dim=1).sum()


SUMS = 4  # a pass's running sums: loss sum, top-1 correct, samples, top-5 correct


def training_sums(device: torch.device, loss: torch.Tensor | None = None, logits: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Zero sums, or one chunk's (its mean ``loss`` times its size; float64 on the device)."""
    sums = torch.zeros(SUMS, device=device, dtype=torch.float64)
    if logits is not None:
        n = labels.shape[0]
        sums[0], sums[1], sums[2], sums[3] = loss * n, (logits.argmax(dim=1) == labels).sum(), n, correct_in_top(logits, labels)
    return sums


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def training_metrics(totals: torch.Tensor) -> dict:
    """The training pass's row entries from its summed :func:`training_sums` (a top-5 sum that an
    epoch resumed from a checkpoint before top-5 existed could not know is None)."""
    count = max(1.0, float(totals[2]))
    return {
        "train_loss": float(totals[0]) / count, "train_acc": 100.0 * float(totals[1]) / count,
        "train_top5": _finite(100.0 * float(totals[3]) / count), "train_samples": int(count),
    }  # fmt: skip


@torch.no_grad()
def split_metrics(model, batches, runtime: Runtime, observers: list[Observer] = ()) -> dict[str, float]:
    """``{"acc", "top5", "loss"}`` of ``model`` over uint8 ``(images, labels)`` batches, summed across ranks.

    With ``observers`` the model is called with ``return_source=True`` and each observer sees
    every batch's target logits, the model's other output and the labels (the mapping heatmap).
    The network body runs at ``--eval-precision``; logits and the loss are float32 in any case.
    """
    sums = torch.zeros(SUMS, device=runtime.device, dtype=torch.float64)
    for images, labels in batches:
        with runtime.eval_autocast():
            if observers:
                logits, source = model(to_float01(images), return_source=True)
            else:
                logits, source = model(to_float01(images)), None
        logits = logits.float()
        for observe in observers:
            observe(logits, source, labels)
        sums[0] += F.cross_entropy(logits, labels, reduction="sum")
        sums[1] += (logits.argmax(dim=1) == labels).sum()
        sums[2] += labels.shape[0]
        sums[3] += correct_in_top(logits, labels)
    totals = runtime.all_reduce_sum(sums)
    count = max(1.0, float(totals[2]))
    return {"acc": 100.0 * float(totals[1]) / count, "top5": 100.0 * float(totals[3]) / count, "loss": float(totals[0]) / count}


def top1_accuracy(model, batches, runtime: Runtime) -> float:
    """Top-1 accuracy (%) of ``model`` over uint8 ``(images, labels)`` batches (:func:`split_metrics`)."""
    return split_metrics(model, batches, runtime)["acc"]


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
