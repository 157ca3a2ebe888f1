"""A run stopped inside an epoch continues exactly; a loss that is not a number stops the run."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_args

from algorithms.engine import StepOutput, Trainer, TrainingStep
from common.files import load_checkpoint
from runner.cli import EXIT_STOPPED, main

# lm-source train: the mapping's statistics are collected inside the epoch; TrivialAugment and the
# watermark's crops draw from per-sample streams (seed, epoch, index); SGD with momentum has optimizer state
ARGS = ("--prompt", "watermark", "--augment", "trivialaugment", "--lm-source", "train", "--optimizer", "sgd",
        "--lr", "1", "--epochs", "3", "--scheduler", "cosine")  # fmt: skip


def checkpoint(folder):
    return load_checkpoint(next(folder.rglob("ckpt.pth")))


def stop_after(monkeypatch, steps: int) -> None:
    """Ask every trainer built from now on to stop after ``steps`` optimizer steps of its run."""
    original = Trainer.optimize
    done = {"steps": 0}

    def counting(self, *args, **kwargs):
        done["steps"] += 1
        self.stop_requested = lambda: done["steps"] == steps
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "optimize", counting)


@pytest.mark.parametrize("steps", [5, 4])  # inside epoch 2 (4 steps an epoch), and at an epoch's last step
def test_a_stop_inside_an_epoch_then_resume_equals_the_uninterrupted_run(tmp_path, cifar_root, monkeypatch, steps):
    assert main("ilm_vp", tiny_args(tmp_path / "straight", cifar_root, *ARGS)) == 0
    with monkeypatch.context() as patch:
        stop_after(patch, steps)
        assert main("ilm_vp", tiny_args(tmp_path / "cut", cifar_root, *ARGS)) == EXIT_STOPPED
    stopped = checkpoint(tmp_path / "cut")
    assert stopped["epoch_progress"]["steps_done"] == (steps - 1) % 4 + 1 and stopped["epoch"] == (steps - 1) // 4
    assert main("ilm_vp", tiny_args(tmp_path / "cut", cifar_root, *ARGS, "--resume")) == 0
    straight, resumed = checkpoint(tmp_path / "straight"), checkpoint(tmp_path / "cut")
    assert resumed.get("epoch_progress") is None and resumed["epoch"] == 3
    assert all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"])
    for a, b in zip(straight["history"], resumed["history"]):
        assert (a["train_loss"], a["train_acc"], a["test_acc"], a["mapping_changes"]) == (b["train_loss"], b["train_acc"], b["test_acc"], b["mapping_changes"])
    assert torch.equal(straight["optimizer"]["state"][0]["momentum_buffer"], resumed["optimizer"]["state"][0]["momentum_buffer"])


def test_a_nan_loss_stops_the_run_naming_epoch_and_step_and_keeps_the_last_checkpoint(tmp_path, cifar_root, monkeypatch, capsys):
    original = TrainingStep.forward
    calls = {"n": 0}

    def poisoned(self, model, images, labels):
        out = original(self, model, images, labels)
        calls["n"] += 1
        return StepOutput(out.loss * math.nan, out.logits, out.source) if calls["n"] == 6 else out  # epoch 2, step 2

    monkeypatch.setattr(TrainingStep, "forward", poisoned)
    assert main("ilm_vp", tiny_args(tmp_path, cifar_root, "--epochs", "3", "--log-interval", "1")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: training loss is nan at epoch 2, step 2: likely a too-large learning rate (--lr")
    assert "last good checkpoint" in err[0] and "(epoch 1) is kept" in err[0]
    kept = checkpoint(tmp_path)
    assert kept["epoch"] == 1 and all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_a_nan_is_caught_at_the_end_of_the_epoch_between_progress_checks(tmp_path, cifar_root, monkeypatch, capsys):
    original = TrainingStep.forward

    def poisoned(self, model, images, labels):
        out = original(self, model, images, labels)
        return StepOutput(out.loss + math.inf, out.logits, out.source)

    monkeypatch.setattr(TrainingStep, "forward", poisoned)
    assert main("ilm_vp", tiny_args(tmp_path, cifar_root, "--epochs", "2", "--log-interval", "100")) == 2
    err = capsys.readouterr().err
    assert "training loss is inf at epoch 1, step 1" in err and "no epoch had finished, so no checkpoint was kept" in err
    assert not list(tmp_path.rglob("ckpt.pth"))
