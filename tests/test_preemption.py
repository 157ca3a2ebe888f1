"""Stop by signal (common/preemption.py), the runner's exit path and ``--requeue`` (runner/requeue.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import same_training, tiny_args

from common import preemption
from common.errors import UserError
from common.files import load_checkpoint
from runner.cli import main
from runner.requeue import requeue

ENTRY = Path(__file__).resolve().parent / "signal_entry.py"


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
        assert main("ilm_vp", args, install_signal_handlers=True) == preemption.EXIT_STOPPED == 75
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
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--epochs", "1", "--scheduler", "constant", "--stop-signals", "none"), install_signal_handlers=True) == 0
    assert seen == []


@pytest.mark.slow
def test_a_signal_in_the_last_epoch_stops_it_too_and_resume_auto_finishes(tmp_path, cifar_root, monkeypatch):
    with monkeypatch.context() as patch:
        _signal_during_epoch(patch, 1, signal.SIGTERM)
        assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root), install_signal_handlers=True) == preemption.EXIT_STOPPED
    assert not (_run(tmp_path / "res") / "results.json").exists()
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--resume", "auto")) == 0
    assert (_run(tmp_path / "res") / "results.json").is_file()


def _handlers_during_run(monkeypatch) -> dict:
    """Records the SIGTERM handler the run sees while it trains."""
    from algorithms.engine import Trainer

    seen, original = {}, Trainer.train_epoch

    def train_epoch(self, e):
        seen["TERM"] = signal.getsignal(signal.SIGTERM)
        return original(self, e)

    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)
    return seen


def test_a_run_installs_its_handlers_for_the_run_only_and_restores_the_callers(tmp_path, cifar_root, monkeypatch):
    def callers(signum, frame):  # a handler the calling program had before the run
        raise AssertionError("not called")

    args = tiny_args(tmp_path / "res", cifar_root, "--epochs", "1", "--scheduler", "constant")
    previous = signal.signal(signal.SIGTERM, callers)
    try:
        seen = _handlers_during_run(monkeypatch)
        assert main("ilm_vp", args, install_signal_handlers=True) == 0
        assert seen["TERM"] is not callers and signal.getsignal(signal.SIGTERM) is callers  # the run's, then the caller's again
        seen.clear()
        assert main("ilm_vp", [*args, "--overwrite"]) == 0  # a library call (argv given): the process's handlers stay
        assert seen["TERM"] is callers and signal.getsignal(signal.SIGTERM) is callers
        assert main("ilm_vp", [*args, "--overwrite"], install_signal_handlers=False) == 0
        assert seen["TERM"] is callers
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert preemption.requested() is None


def test_requeue_outside_slurm_and_when_scontrol_fails(tmp_path, monkeypatch):
    assert requeue({}) == (False, "not requeued: not a SLURM job (SLURM_JOB_ID is unset)")
    record = fake_scontrol(tmp_path, monkeypatch, status=1)
    done, note = requeue({"SLURM_JOB_ID": "7"})
    assert not done and note == "not requeued: scontrol requeue 7 exited 1 (scontrol: said no)"
    assert record.read_text() == "requeue 7\n"


def _signalled(argv: list[str], at: str, signal_name: str = "TERM") -> subprocess.CompletedProcess:
    """The run in a subprocess that sends itself a real signal at ``at`` (``PATTERN:K``: batch K of a pass, tests/signal_entry.py)."""
    return subprocess.run([sys.executable, str(ENTRY), signal_name, at, "ilm_vp", *argv], capture_output=True, text=True, timeout=600)


# 50 training images: a mapping pass of 7 batches of 8; 20 test images: 3 batches
PASS_ARGS = ("--epochs", "3", "--eval-batch-size", "8", "--milestones", "0.9", "0.95")


@pytest.mark.parametrize("at, where", [("epoch 2 mapping:2", "during the epoch 2 mapping pass"), ("epoch 2 test:1", "during the epoch 2 test pass")])
def test_a_signal_during_a_no_grad_pass_stops_within_a_batch_and_resume_auto_equals_the_straight_run(tmp_path, cifar_root, at, where):
    assert main("ilm_vp", tiny_args(tmp_path / "straight", cifar_root, *PASS_ARGS)) == 0
    cut = tiny_args(tmp_path / "cut", cifar_root, *PASS_ARGS, "--resume", "auto")
    stopped = _signalled(cut, at, "USR1" if "test" in at else "TERM")
    assert stopped.returncode == preemption.EXIT_STOPPED, stopped.stderr
    assert "items drawn after the signal: 2" not in stopped.stderr  # the pass stopped before computing another batch
    run = _run(tmp_path / "cut")
    assert f"{where}; the last checkpoint {run / 'ckpt.pth'} is kept (the interrupted pass is redone)" in stopped.stderr
    assert torch.load(run / "ckpt.pth", weights_only=False)["epoch"] == 1  # the pass came after epoch 1's checkpoint
    assert main("ilm_vp", cut) == 0
    straight, resumed = (torch.load(_run(tmp_path / d) / "ckpt.pth", weights_only=False) for d in ("straight", "cut"))
    assert resumed["epoch"] == 3 and same_training(straight, resumed)
    assert [r["mapping_changes"] for r in straight["history"]] == [r["mapping_changes"] for r in resumed["history"]]


def test_a_signal_while_images_decode_stops_before_anything_is_written_and_resume_auto_starts_it(tmp_path, folder_dataset):
    args = ["--network", "tiny_test_net", "--dataset", "folder", "--data-path", str(folder_dataset), "--epochs", "2",
            "--batch-size", "8", "--image-size", "32", "--device", "cpu", "--milestones", "0.9", "0.95", "--resume", "auto"]  # fmt: skip
    assert main("ilm_vp", [*args, "--results-path", str(tmp_path / "straight")]) == 0
    cut = [*args, "--results-path", str(tmp_path / "cut")]
    stopped = _signalled(cut, "decode:3")
    assert stopped.returncode == preemption.EXIT_STOPPED, stopped.stderr
    assert "items drawn after the signal: 2" not in stopped.stderr
    assert "stopped by SIGTERM during decode images; the run had no checkpoint yet: it starts again" in stopped.stderr
    assert not list((tmp_path / "cut").rglob("*.json"))  # nothing was written
    assert main("ilm_vp", cut) == 0
    straight, resumed = (torch.load(_run(tmp_path / d) / "ckpt.pth", weights_only=False) for d in ("straight", "cut"))
    assert same_training(straight, resumed)


def test_a_pass_stops_at_the_first_item_after_a_request_and_not_without_one():
    with preemption.handling([signal.SIGUSR2]):
        seen = []
        for i in preemption.stoppable(range(5), "during counting"):
            seen.append(i)
        assert seen == list(range(5))
        seen = []
        with pytest.raises(preemption.Stopped) as stop:
            for i in preemption.stoppable(range(5), "during counting", shared=5):
                seen.append(i)
                if i == 1:
                    os.kill(os.getpid(), signal.SIGUSR2)
    assert seen == [0, 1]
    stop.value.kept(None)
    assert str(stop.value) == "stopped by SIGUSR2 during counting; the run had no checkpoint yet: it starts again"


def test_a_signal_during_a_checkpoint_write_leaves_it_whole_and_stops_at_the_next_pass(tmp_path, cifar_root, monkeypatch, capsys):
    import common.files

    real, sent = common.files.atomic_write_bytes, []

    def signalled_write(path, payload):
        if path.name == "ckpt.pth" and not sent:
            sent.append(path)
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the checkpoint is written
        real(path, payload)

    monkeypatch.setattr(common.files, "atomic_write_bytes", signalled_write)
    args = tiny_args(tmp_path, cifar_root, "--epochs", "3", "--milestones", "0.9", "0.95")
    assert main("ilm_vp", args, install_signal_handlers=True) == preemption.EXIT_STOPPED
    run = _run(tmp_path)
    assert "stopped by SIGTERM during the epoch 2 mapping pass; the last checkpoint" in capsys.readouterr().err
    assert load_checkpoint(run / "ckpt.pth")["epoch"] == 1  # whole, and it verifies
