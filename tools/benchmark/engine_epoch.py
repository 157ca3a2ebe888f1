"""The engine's epoch: one ILM-VP epoch through the real runner, every speed feature at its default.

Measured in the same process right after the floor, so both run warm; the floor uses the network
as the engine runs it (``models.frozen.prepare_frozen_network``, channels-last).
"""
from __future__ import annotations

import statistics
import time

from runner.records import read_metrics
from tools.benchmark.measure import cpu_seconds, measure_floor, peak_memory_mb


def _cpu_timed(fn, totals: dict, phase: str):
    def wrapper(*args, **kwargs):
        c0 = cpu_seconds()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[phase] += cpu_seconds() - c0

    return wrapper


def timed_epochs(rows: list[dict]) -> dict:
    """What the benchmark reports of a run's epochs (``metrics.jsonl`` rows): the one epoch of a
    one-epoch run; otherwise the median of every epoch but the first, which on a GPU includes
    cuDNN's tuning of each new input shape (and compilation): a first epoch is not the speed of the next 199."""
    timed = rows[1:] if len(rows) > 1 else rows

    def mid(key: str) -> float:
        return statistics.median(r[key] for r in timed)

    phases = {"mapping": mid("mapping_seconds"), "train": mid("train_seconds"), "test": mid("eval_seconds")}
    n = len(rows)
    label = "epoch 1 of 1" if n == 1 else "epoch 2 of 2" if n == 2 else f"median of epochs 2-{n} of {n}"
    return {
        "timed": label,
        "epoch_seconds": mid("epoch_seconds"),
        "phase_seconds": phases,
        "train_images_per_s": mid("train_images_per_s"),
        "test_acc": rows[-1]["test_acc"],
    }


def engine_worker(spec: dict) -> dict:
    import torch

    from runner.cli import run
    from runner.config import build_parser, config_from_args
    from runner.devices import setup_runtime

    runtime = setup_runtime(spec["device"], spec["precision"])
    # the memory mode skips the floor: its full-batch step would set this process's peak memory
    floor = measure_floor(spec, runtime) if spec.get("floor", True) else None
    argv = [
        "--network", spec["network"], "--dataset", "cifar10", "--data-path", spec["data_root"],
        "--max-train-samples", str(spec["n_train"]), "--max-test-samples", str(spec["n_test"]),
        "--epochs", str(spec["epochs"]), "--batch-size", str(spec["batch_size"]),
        "--eval-batch-size", str(spec.get("engine_eval_batch_size", spec["eval_batch_size"])), "--device", spec["device"],
        "--precision", spec["precision"], "--results-path", spec["results"], "--overwrite",
        "--log-interval", "1000000", "--seed", "7",
    ]  # fmt: skip
    if spec["weights"]:
        argv += ["--weights", spec["weights"]]
    if not spec["channels_last"]:
        argv.append("--no-channels-last")
    if spec["compile"]:
        argv.append("--compile")
    if not spec["fold_bn"]:
        argv.append("--no-fold-bn")
    argv += spec.get("extra_args", [])  # e.g. --micro-batch 16 --recompute (memory mode)
    config = config_from_args("ilm_vp", build_parser("ilm_vp").parse_args(argv))
    from algorithms.engine import Trainer

    phase_cpu = {"mapping": 0.0, "train": 0.0, "test": 0.0}
    for method, phase in (("before_epoch", "mapping"), ("train_epoch", "train"), ("evaluate", "test")):  # before_epoch: the mapping refit hook
        setattr(Trainer, method, _cpu_timed(getattr(Trainer, method), phase_cpu, phase))
    if runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    t0 = time.perf_counter()
    run(config, argv)
    total = time.perf_counter() - t0
    rows = read_metrics(config.run_path())
    timed = timed_epochs(rows)
    return {
        "precision": runtime.precision,
        "device": str(runtime.device),
        "floor": floor,
        "full": {
            "timed": timed["timed"],
            "phase_seconds": timed["phase_seconds"],
            "epoch_seconds": timed["epoch_seconds"],
            "images_per_s": spec["n_train"] / timed["epoch_seconds"],
            "train_images_per_s": timed["train_images_per_s"],
            "test_acc": timed["test_acc"],
            "epoch_cpu_seconds": sum(phase_cpu.values()) / spec["epochs"],  # mean over epochs
            "phase_cpu_seconds": {k: v / spec["epochs"] for k, v in phase_cpu.items()},
            "run_seconds_including_data_loading": total,
            "peak_memory_mb": peak_memory_mb(runtime.device),
        },
    }
