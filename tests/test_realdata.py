"""Real data (../shared, located by VP_SHARED): EfficientNet-Lite0 reprogrammed to CIFAR-10."""
from __future__ import annotations

import json

import pytest

from runner.cli import main


@pytest.mark.realdata
@pytest.mark.slow
def test_one_epoch_of_ilm_vp_clearly_beats_chance(shared_root, tmp_path):
    args = [
        "--network", "efficientnet_lite0", "--dataset", "cifar10", "--data-path", str(shared_root / "datasets"),
        "--max-train-samples", "500", "--max-test-samples", "500", "--batch-size", "32", "--epochs", "1",
        "--device", "cpu", "--results-path", str(tmp_path),
    ]  # fmt: skip
    assert main("ilm_vp", args) == 0
    (results,) = tmp_path.rglob("results.json")
    accuracy = json.loads(results.read_text())["final_test_acc"]
    # chance is 10%: 500 test images give a standard error of 1.3 points, so 15% is ~4 sigma above it
    assert accuracy >= 15.0, accuracy
