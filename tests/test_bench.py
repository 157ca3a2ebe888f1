"""tools/bench.py end to end on a tiny setting: every measurement runs and lands in the table and JSON.

Speeds are not asserted (they depend on the machine); what is checked is that each worker
measured what it claims: the epoch's phases add up, the image counts are those asked for, and the
table has one row per network and precision.
"""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


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
