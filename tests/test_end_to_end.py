"""End-to-end runs of the method scripts on tiny data: outputs, resume, eval-only."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from algorithms.cli import main
from conftest import REPO, tiny_args


def run_dir_of(results: Path) -> Path:
    (path,) = [p.parent for p in results.rglob("config.json")]
    return path


@pytest.mark.parametrize("method", ["ilm_vp", "flm_vp", "rlm_vp"])
def test_tiny_run_writes_every_output(method, tmp_path, cifar_root):
    assert main(method, tiny_args(tmp_path / "res", cifar_root)) == 0
    run = run_dir_of(tmp_path / "res")
    assert run.relative_to(tmp_path / "res").parts[:3] == (method, "cifar10", "tiny_test_net")
    for name in ("config.json", "metrics.jsonl", "ckpt.pth", "best.pth", "results.json"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "mappings").iterdir()) == ["epoch_001.json", "epoch_002.json"]
    assert list((run / "tensorboard").iterdir())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("train_loss", "train_acc", "test_acc", "lr", "mapping_changes", "epoch_seconds", "train_images_per_s"):
        assert key in rows[0]
    results = json.loads((run / "results.json").read_text())
    assert results["best_test_acc"] == max(r["test_acc"] for r in rows)
    assert results["trainable_params"] == 3 * 64 * 64
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["method"] == method and "torch" in config["versions"] and config["git_commit"]
    mapping = json.loads((run / "mappings" / "epoch_001.json").read_text())
    assert list(mapping) == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert len(set(mapping.values())) == 10 and all(v.startswith("source class") for v in mapping.values())
