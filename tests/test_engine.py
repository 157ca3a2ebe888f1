"""algorithms/engine.py: mapping statistics from the training pass, and a bf16 run against fp32."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import tiny_args

from algorithms.engine import Trainer
from algorithms.methods import FAMILIES
from algorithms.runtime import Runtime
from data.registry import SubsetSpec, load_dataset
from runner.cli import main
from runner.config import build_parser, config_from_args
from runner.devices import cpu_supports_bf16, resolve_precision
from runner.run_dir import RunDir

CPU = torch.device("cpu")


def make_trainer(tmp_path, cifar_root, *extra: str, **overrides) -> Trainer:
    args = build_parser("ilm_vp").parse_args(tiny_args(tmp_path, cifar_root, *extra))
    config = replace(config_from_args("ilm_vp", args), **overrides)
    data = load_dataset("cifar10", cifar_root, batch_size=config.batch_size, subset=SubsetSpec())
    runtime = Runtime(CPU, resolve_precision(config.precision, CPU))
    experiment = FAMILIES["visual_prompt"].build(config, data, runtime)
    return Trainer(config, experiment, data, runtime, RunDir(tmp_path / "run", enabled=False))


def test_lm_source_train_counts_equal_a_pass_when_the_prompt_does_not_move(tmp_path, cifar_root):
    # a learning rate of 0 (refused on the command line) keeps the prompt where it starts
    trainer = make_trainer(tmp_path, cifar_root, "--lm-source", "train", "--prompt-init", "randn", lr=0.0)
    trainer.refresh_mapping(0)
    trainer.train_epoch(0)
    collected = trainer.pending_stats
    assert collected is not None and int(collected.sum()) == 50
    torch.testing.assert_close(collected, trainer.gather_statistics(1), rtol=0, atol=0)


def test_lm_source_train_skips_the_pass_and_uses_the_collected_counts(tmp_path, cifar_root, monkeypatch):
    trainer = make_trainer(tmp_path, cifar_root, "--lm-source", "train")
    trainer.refresh_mapping(0)
    trainer.train_epoch(0)
    monkeypatch.setattr(trainer, "gather_statistics", lambda epoch: pytest.fail("the pass ran"))
    trainer.refresh_mapping(1)
    assert trainer.pending_stats is None


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no bf16")
def test_bf16_run_trains_close_to_fp32(tmp_path, cifar_root):
    import json

    for precision in ("fp32", "bf16"):
        assert main("ilm_vp", tiny_args(tmp_path / precision, cifar_root, "--precision", precision, "--epochs", "1")) == 0
    runs = {p: next((tmp_path / p).rglob("metrics.jsonl")).parent for p in ("fp32", "bf16")}
    rows = {p: json.loads((runs[p] / "metrics.jsonl").read_text()) for p in runs}
    assert json.loads((runs["bf16"] / "config.json").read_text())["resolved"]["precision"] == "bf16"
    assert abs(rows["bf16"]["train_loss"] - rows["fp32"]["train_loss"]) < 0.05


def test_a_milestone_on_epoch_zero_is_warned_about(tmp_path, cifar_root, capsys):
    from algorithms.engine import lr_factor, schedule_warnings
    from algorithms.settings import RunConfig

    one = RunConfig(method="ilm_vp", epochs=1)  # the paper's milestones 0.5 and 0.72 both give int(.) = 0
    (warning,) = schedule_warnings(one)
    assert "milestones 0.5 0.72 fall on epoch 0" in warning and "lr 0.0001" in warning and "--scheduler constant" in warning
    assert lr_factor(one, steps_per_epoch=4)(0) == pytest.approx(0.01)  # what the warning says: 0.01 x 0.1^2 from step 0
    assert schedule_warnings(RunConfig(method="ilm_vp", epochs=3)) == []  # int(1.5) = 1, int(2.16) = 2
    assert schedule_warnings(RunConfig(method="ilm_vp", epochs=1, scheduler="constant")) == []
    assert "milestone 0.5 falls" in schedule_warnings(RunConfig(method="ilm_vp", epochs=1, milestones=[0.5, 1.0]))[0]
    assert main("ilm_vp", tiny_args(tmp_path, cifar_root, "--epochs", "1")) == 0
    assert capsys.readouterr().err.count("warning: with --epochs 1 the learning-rate milestones") == 1
