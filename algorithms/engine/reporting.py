"""What a run reports: the epoch line, TensorBoard scalars and ``results.json``'s summary."""
from __future__ import annotations

from typing import Any

import torch

from algorithms.engine.evaluation import PROTOCOL, val_selection
from algorithms.settings import RunConfig
from data.registry import TargetData


def epoch_scalars(row: dict[str, Any]) -> dict[str, float | None]:
    """The metric row as TensorBoard scalars."""
    return {
        "train/loss": row["train_loss"],
        "train/acc": row["train_acc"],
        "train/top5": row.get("train_top5"),
        "test/acc": row["test_acc"],
        "test/top5": row.get("test_top5"),
        "test/loss": row.get("test_loss"),
        "val/acc": row["val_acc"],
        "val/top5": row.get("val_top5"),
        "val/loss": row.get("val_loss"),
        "lr": row["lr"],
        "mapping/changes": row.get("mapping_changes"),
        "time/epoch_seconds": row["epoch_seconds"],
        "time/train_images_per_s": row["train_images_per_s"],
    }


def epoch_line(row: dict[str, Any], epochs: int, best_test_acc: float) -> str:
    """One line per epoch: losses, accuracies, learning rate, mapping changes and where the time went."""
    changes = "" if row.get("mapping_changes") is None else f"  mapping changes {row['mapping_changes']}"
    val = "" if row["val_acc"] is None else f"  val {row['val_acc']:.2f}%"
    return (
        f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.2f}%"
        f"  test {row['test_acc']:.2f}% (best {best_test_acc:.2f}%){val}  lr {row['lr']:.2e}{changes}"
        f"  [{row['epoch_seconds']:.1f}s: mapping {row['mapping_seconds']:.1f} train {row['train_seconds']:.1f}"
        f" eval {row['eval_seconds']:.1f}; {row['train_images_per_s']:.0f} img/s]"
    )


SPLIT_METRICS = ("acc", "top5", "loss")  # what every split reports (algorithms.engine.evaluation)


def final_metrics(last: dict[str, Any]) -> dict[str, float | None]:
    """Top-1, top-5 and loss of every split after the last epoch: ``final_<split>_<metric>`` (val only with a validation split)."""
    splits = ("train", "test", "val") if last.get("val_acc") is not None else ("train", "test")
    return {f"final_{split}_{metric}": last.get(f"{split}_{metric}") for split in splits for metric in SPLIT_METRICS}


def run_summary(config: RunConfig, history: list[dict], best: dict, trainable: int, data: TargetData, info: dict) -> dict:
    """``results.json``: the accuracies under each protocol (:data:`PROTOCOL`), sizes, times and the method's facts."""
    last = history[-1] if history else {}
    seconds = sum(r["epoch_seconds"] for r in history)
    return {
        "method": config.method,
        "dataset": config.dataset,
        "network": config.network,
        "seed": config.seed,
        "epochs": len(history),
        "final_test_acc": last.get("test_acc"),
        "best_test_acc": best["test_acc"],
        "best_epoch": best["epoch"],
        **val_selection(history),
        **final_metrics(last),
        "protocol": PROTOCOL,
        "trainable_params": trainable,
        "data_sizes": data.sizes(),
        "total_seconds": seconds,
        "mean_epoch_seconds": seconds / len(history) if history else None,
        **peak_memory(),
        **info,
    }


def peak_memory() -> dict:
    """This process's peak memory in MiB: CUDA memory allocated by tensors where CUDA is in use, else the
    host's peak resident set (``getrusage``); a resumed run reports the peak of its last process."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return {"peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20, "peak_memory_kind": "cuda_allocated"}
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return {"peak_memory_mb": rss / (2**20 if sys.platform == "darwin" else 2**10), "peak_memory_kind": "host_rss"}

