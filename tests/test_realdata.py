"""Real data (../shared, located by VP_SHARED): EfficientNet-Lite0 reprogrammed to CIFAR-10."""
from __future__ import annotations

import json

import pytest
from mapping_passes import gather_statistics

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


@pytest.mark.realdata
@pytest.mark.slow
def test_efficientnet_lite0_step_in_chunks_and_with_recompute_equals_the_whole_batch(shared_root, tmp_path):
    """One SGD step of the real network at 224 px: chunks of 8 and recomputed stages give the batch-of-32 prompt."""
    import torch

    from algorithms.engine import Trainer
    from algorithms.methods import FAMILIES
    from algorithms.runtime import Runtime
    from data.registry import SubsetSpec, load_dataset
    from runner.config import build_parser, config_from_args
    from runner.run_dir import RunDir

    runtime = Runtime(torch.device("cpu"), "fp32")
    data = None
    steps, counts = {}, {}
    for name, extra in (("whole", []), ("chunks", ["--micro-batch", "8"]), ("recompute", ["--recompute"])):
        argv = [
            "--network", "efficientnet_lite0", "--dataset", "cifar10", "--data-path", str(shared_root / "datasets"),
            "--max-train-samples", "32", "--max-test-samples", "16", "--batch-size", "32", "--optimizer", "sgd",
            "--momentum", "0", "--lr", "10", "--epochs", "1", *extra,
        ]  # fmt: skip
        config = config_from_args("ilm_vp", build_parser("ilm_vp").parse_args(argv))
        if data is None:
            data = load_dataset("cifar10", config.data_root, batch_size=32, subset=SubsetSpec(32, 16))
        trainer = Trainer(config, FAMILIES["visual_prompt"].build(config, data, runtime), data, runtime, RunDir(tmp_path / name, enabled=False))
        counts[name] = gather_statistics(trainer, 0)  # the mapping pass
        trainer.model.label_mapping.fit(counts[name])
        trainer.train_epoch(0)
        steps[name] = trainer.model.input_transform.theta.detach().clone()  # from theta = 0: -lr * gradient
    assert steps["whole"].abs().max() > 1e-4
    for name in ("chunks", "recompute"):
        assert torch.equal(counts[name], counts["whole"]), name
        torch.testing.assert_close(steps[name], steps["whole"], rtol=1e-4, atol=1e-6 * float(steps["whole"].abs().max()))
