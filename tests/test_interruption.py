"""A run stopped inside an epoch continues exactly; a loss that is not a number stops the run."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_args

from algorithms.engine import StepOutput, TrainingStep
from common.files import load_checkpoint
from common.preemption import EXIT_STOPPED
from runner.cli import main

ENTRY = Path(__file__).resolve().parent / "signal_entry.py"

# lm-source train: the mapping's statistics are collected inside the epoch; TrivialAugment and the
# watermark's crops draw from per-sample streams (seed, epoch, index); SGD with momentum has optimizer state
ARGS = ("--prompt", "watermark", "--augment", "trivialaugment", "--lm-source", "train", "--optimizer", "sgd",
        "--lr", "1", "--epochs", "3", "--scheduler", "cosine")  # fmt: skip


def checkpoint(folder):
    return load_checkpoint(next(folder.rglob("ckpt.pth")))


def signalled_run(folder, cifar_root, signal_name: str, after: int, *extra: str) -> subprocess.CompletedProcess:
    """The run in a subprocess that receives a real ``signal_name`` after optimizer step ``after``."""
    argv = tiny_args(folder, cifar_root, *ARGS, *extra)
    return subprocess.run([sys.executable, str(ENTRY), signal_name, str(after), "ilm_vp", *argv], capture_output=True, text=True, timeout=600)


# 4 steps an epoch (50 images, batches of 16): step 5 is inside epoch 2, step 4 an epoch's last
@pytest.mark.slow
@pytest.mark.parametrize("signal_name, steps", [("USR1", 5), ("TERM", 4)])
def test_a_signal_inside_an_epoch_then_resume_auto_equals_the_uninterrupted_run(tmp_path, cifar_root, signal_name, steps):
    assert main("ilm_vp", tiny_args(tmp_path / "straight", cifar_root, *ARGS)) == 0
    stopped = signalled_run(tmp_path / "cut", cifar_root, signal_name, steps)
    assert stopped.returncode == EXIT_STOPPED, stopped.stderr
    assert f"stopped by SIG{signal_name} in epoch {(steps - 1) // 4 + 1} of 3 after step {(steps - 1) % 4 + 1} of 4" in stopped.stderr
    written = checkpoint(tmp_path / "cut")
    assert written["epoch_progress"]["steps_done"] == (steps - 1) % 4 + 1 and written["epoch"] == (steps - 1) // 4
    assert main("ilm_vp", tiny_args(tmp_path / "cut", cifar_root, *ARGS, "--resume", "auto")) == 0
    straight, resumed = checkpoint(tmp_path / "straight"), checkpoint(tmp_path / "cut")
    assert resumed.get("epoch_progress") is None and resumed["epoch"] == 3
    assert all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"])
    for a, b in zip(straight["history"], resumed["history"], strict=True):
        keys = ("lr", "train_loss", "train_acc", "test_acc", "mapping_changes")  # lr: the cosine schedule's at the epoch's start
        assert [a[k] for k in keys] == [b[k] for k in keys]
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
