"""Stop by signal (common/preemption.py), the runner's exit path and ``--requeue`` (runner/requeue.py)."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from conftest import tiny_args

from common import preemption
from common.errors import UserError
from runner.cli import main
from runner.requeue import requeue


def test_stop_signals_are_parsed_and_checked():
    assert preemption.parse_signals("TERM,USR1") == [signal.SIGTERM, signal.SIGUSR1]
    assert preemption.parse_signals(" sigusr2 , USR2") == [signal.SIGUSR2]
    assert preemption.parse_signals("none") == []
    with pytest.raises(UserError, match="unknown signal 'KILL'"):
        preemption.parse_signals("TERM,KILL")


def test_a_signal_becomes_a_request_and_the_handlers_are_restored():
    before = signal.getsignal(signal.SIGUSR1)
    with preemption.handling([signal.SIGUSR1, signal.SIGTERM]):
        assert preemption.requested() is None
        os.kill(os.getpid(), signal.SIGUSR1)
        assert preemption.requested() == "USR1"
        with pytest.raises(KeyboardInterrupt):  # asked twice: stop at once
            os.kill(os.getpid(), signal.SIGTERM)
        assert preemption.requested() == "USR1"
    assert preemption.requested() is None and signal.getsignal(signal.SIGUSR1) is before


def _signal_during_epoch(monkeypatch, epoch: int, signum: int = signal.SIGUSR1) -> None:
    from algorithms.engine import Trainer

    original = Trainer.train_epoch

    def train_epoch(self, e):
        if e == epoch:
            os.kill(os.getpid(), signum)  # arrives mid-epoch; the loop stops at its next poll
        return original(self, e)

    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)


def _run(results: Path) -> Path:
    (path,) = [p.parent for p in results.rglob("config.json")]
    return path


def fake_scontrol(tmp_path: Path, monkeypatch, status: int = 0) -> Path:
    """An ``scontrol`` on PATH that records its arguments."""
    bin_dir, record = tmp_path / "bin", tmp_path / "scontrol.args"
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> {record}\necho "scontrol: said no" >&2\nexit {status}\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


@pytest.mark.slow
def test_signal_stops_after_a_checkpoint_requeues_and_resume_auto_finishes_exactly(tmp_path, cifar_root, monkeypatch, capsys):
    assert main("ilm_vp", tiny_args(tmp_path / "straight", cifar_root, "--epochs", "3")) == 0
    record = fake_scontrol(tmp_path, monkeypatch)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    args = tiny_args(tmp_path / "cut", cifar_root, "--epochs", "3", "--resume", "auto", "--requeue")
    with monkeypatch.context() as patch:
        _signal_during_epoch(patch, 0)
        assert main("ilm_vp", args) == preemption.EXIT_STOPPED == 75
    err = capsys.readouterr().err
    # the signal came before the epoch's first step: the run stops after that step, mid-epoch
    assert "stopped by SIGUSR1 in epoch 1 of 3 after step 1 of 4; checkpoint " in err and "continue with --resume auto" in err
    assert "requeued SLURM job 4242" in err and record.read_text() == "requeue 4242\n"
    run = _run(tmp_path / "cut")
    assert not (run / "metrics.jsonl").exists() or not (run / "metrics.jsonl").read_text().strip()  # no epoch finished
    stop = torch.load(run / "ckpt.pth", weights_only=False)  # the stop's checkpoint loads
    assert stop["epoch"] == 0 and stop["epoch_progress"]["steps_done"] == 1
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the handlers are gone after the run

    assert main("ilm_vp", args) == 0  # the requeued job: the same command continues
    a = torch.load(_run(tmp_path / "straight") / "ckpt.pth", weights_only=False)["model"]
    b = torch.load(run / "ckpt.pth", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_stop_signals_none_keeps_the_default_handlers(tmp_path, cifar_root, monkeypatch):
    seen = []
    monkeypatch.setattr(signal, "signal", lambda s, h: seen.append(s))
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--epochs", "1", "--scheduler", "constant", "--stop-signals", "none")) == 0
    assert seen == []


@pytest.mark.slow
def test_a_signal_in_the_last_epoch_stops_it_too_and_resume_auto_finishes(tmp_path, cifar_root, monkeypatch):
    with monkeypatch.context() as patch:
        _signal_during_epoch(patch, 1, signal.SIGTERM)
        assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root)) == preemption.EXIT_STOPPED
    assert not (_run(tmp_path / "res") / "results.json").exists()
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--resume", "auto")) == 0
    assert (_run(tmp_path / "res") / "results.json").is_file()


def test_requeue_outside_slurm_and_when_scontrol_fails(tmp_path, monkeypatch):
    assert requeue({}) == (False, "not requeued: not a SLURM job (SLURM_JOB_ID is unset)")
    record = fake_scontrol(tmp_path, monkeypatch, status=1)
    done, note = requeue({"SLURM_JOB_ID": "7"})
    assert not done and note == "not requeued: scontrol requeue 7 exited 1 (scontrol: said no)"
    assert record.read_text() == "requeue 7\n"
