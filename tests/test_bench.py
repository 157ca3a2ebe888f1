"""tools/bench.py end to end on a tiny setting: every measurement runs and lands in the table and JSON.

Speeds are not asserted (they depend on the machine); what is checked is that each worker
measured what it claims: the epoch's phases add up, the image counts are those asked for, and the
table has one row per network and precision.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.slow
def test_bench_runs_every_measurement(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable, str(REPO / "tools" / "bench.py"), "--networks", "mobilenet_v3_small", "--synthetic",
        "--train-samples", "20", "--test-samples", "10", "--batch-size", "5", "--floor-steps", "1",
        "--floor-warmup", "0", "--workers", "0", "--output", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["data"] == "synthetic"
    (row,) = report["rows"]
    assert row["network"] == "mobilenet_v3_small" and not row["pretrained"]
    assert row["precision"] == "fp32"  # auto on CPU
    for part in (row["floor"], row["full"], row["straightforward"], row["straightforward"]["network_alone"]):
        phases = part["phase_seconds"]
        assert set(phases) == {"mapping", "train", "test"} and all(v > 0 for v in phases.values())
    full = row["full"]
    assert abs(sum(full["phase_seconds"].values()) - full["epoch_seconds"]) < 0.05 * full["epoch_seconds"] + 0.5
    assert 0.0 <= full["test_acc"] <= 100.0 and 0.0 <= row["straightforward"]["test_acc"] <= 100.0
    lines = report["table"].splitlines()
    assert len(lines) == 3 and lines[2].startswith("| mobilenet_v3_small (random init) | fp32 |")
    assert lines[0].count("|") == lines[2].count("|")
    assert report["table"] in proc.stdout


def test_memory_mode_alternates_configurations_and_reports_medians():
    from tools.benchmark.memory import measure_memory, memory_table

    calls = []

    def fake_worker(kind: str, spec: dict) -> dict:
        calls.append(spec["extra_args"])
        assert kind == "engine" and spec["floor"] is False
        micro = int(spec["extra_args"][1])
        recompute = "--recompute" in spec["extra_args"]
        run = sum(1 for c in calls if c == spec["extra_args"])
        return {
            "precision": "fp32",
            "full": {"epoch_seconds": micro / 10 + run + (5 if recompute else 0), "epoch_cpu_seconds": 2.0 * micro, "phase_seconds": {},
                     "peak_memory_mb": 100.0 * micro / (2 if recompute else 1) + run, "test_acc": 10.0},
        }  # fmt: skip

    base = {"network": "net", "pretrained": False, "batch_size": 128}
    rows = measure_memory(fake_worker, base, [128, 16], recompute=True, repeats=3)
    assert calls[:4] == [["--micro-batch", "128"], ["--micro-batch", "16"], ["--micro-batch", "128", "--recompute"], ["--micro-batch", "16", "--recompute"]]
    assert len(calls) == 12 and calls[4:8] == calls[:4]  # round-robin, not one configuration three times in a row
    (whole, small, whole_r, small_r) = rows
    assert whole["epoch_seconds"] == [13.8, 14.8, 15.8] and whole["median_epoch_seconds"] == 14.8
    assert small_r["median_peak_memory_mb"] == 802.0 and small_r["recompute"] and small_r["micro_batch"] == 16
    lines = memory_table(rows).splitlines()
    assert len(lines) == 6 and lines[0].count("|") == lines[2].count("|")
    assert lines[2].startswith("| net (random init) | fp32 | 128 | 128 | no | 14.8 (13.8, 14.8, 15.8) | 256 | 12802 (12801, 12802, 12803) | 1.00x | 1.00x | 1.00x |")
    assert "| 16 | yes |" in lines[5] and f"| 0.12x | {802 / 12802:.2f}x |" in lines[5]


@pytest.mark.slow
def test_bench_memory_mode_runs_each_configuration_in_its_own_process(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable, str(REPO / "tools" / "bench.py"), "--networks", "mobilenet_v3_small", "--synthetic",
        "--train-samples", "20", "--test-samples", "10", "--batch-size", "10", "--micro-batches", "5",
        "--recompute", "--output", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["rows"] == [] and len(report["memory_rows"]) == 2
    for row in report["memory_rows"]:
        assert row["median_peak_memory_mb"] > 0 and row["median_epoch_seconds"] > 0 and len(row["test_acc"]) == 1
    assert [(r["micro_batch"], r["recompute"]) for r in report["memory_rows"]] == [(5, False), (5, True)]
    assert report["table"] in proc.stdout and len(report["table"].splitlines()) == 4


def test_a_multi_epoch_benchmark_reports_the_median_of_all_but_the_first_epoch_and_says_so():
    from tools.benchmark.engine_epoch import timed_epochs
    from tools.benchmark.report import table

    def row(epoch: int, seconds: float) -> dict:
        return {"epoch": epoch, "epoch_seconds": seconds, "mapping_seconds": seconds / 4, "train_seconds": seconds / 2,
                "eval_seconds": seconds / 4, "train_images_per_s": 1000 / seconds, "test_acc": 10.0 * epoch}  # fmt: skip

    first_slow = [row(1, 60.0), row(2, 6.0), row(3, 8.0), row(4, 7.0)]
    got = timed_epochs(first_slow)
    assert got["timed"] == "median of epochs 2-4 of 4" and got["epoch_seconds"] == 7.0  # not 60, not the mean
    assert got["phase_seconds"] == {"mapping": 1.75, "train": 3.5, "test": 1.75} and got["test_acc"] == 40.0
    assert timed_epochs(first_slow[:3])["epoch_seconds"] == 7.0  # median of 6 and 8
    two = timed_epochs(first_slow[:2])
    assert two["timed"] == "epoch 2 of 2" and two["epoch_seconds"] == 6.0
    assert timed_epochs(first_slow[:1])["timed"] == "epoch 1 of 1" and timed_epochs(first_slow[:1])["epoch_seconds"] == 60.0
    cpu = {"epoch_cpu_seconds": 10.0}
    floor = {"forward_images_per_s": 1.0, "train_images_per_s": 1.0, "epoch_seconds": 5.0, **cpu}
    full = {**got, "images_per_s": 1.0, "peak_memory_mb": 1.0, **cpu}
    lines = table([{"network": "n", "pretrained": True, "precision": "bf16", "floor": floor, "full": full, "straightforward": None}]).splitlines()
    assert lines[0].endswith("| engine epoch timed |") and lines[2].endswith("| median of epochs 2-4 of 4 |")
    assert lines[0].count("|") == lines[2].count("|") and "| 7.0 (1.8/3.5/1.8) |" in lines[2]


def test_bench_times_three_epochs_on_cuda_and_one_elsewhere(monkeypatch):
    import torch

    from tools.bench import default_epochs

    assert default_epochs("cuda") == default_epochs("cuda:1") == 3 and default_epochs("cpu") == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_epochs("auto") == 3
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_epochs("auto") == 1
