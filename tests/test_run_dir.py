"""runner/run_dir.py and runner/run_lock.py: overwrite, one writer per folder, write failures, no empty folders."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, tiny_args, write_cifar10_pickles, write_image_folder

from algorithms.engine import Trainer
from common.errors import UserError
from runner.cli import main
from runner.run_dir import RunDir
from runner.run_lock import RunLock

RUN = "pinned"  # --run-name: the same folder whatever the other flags say


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_folder(results: Path, method: str = "ilm_vp") -> Path:
    return results / method / "cifar10" / "tiny_test_net" / RUN


def one_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def fail_in_first_epoch(monkeypatch, exc: BaseException) -> None:
    def train_epoch(self, epoch):
        raise exc

    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)


# ---------------------------------------------------------------------------------------------
# --overwrite


def _break_data(cifar_root: Path, args: list[str]) -> list[str]:
    shutil.rmtree(cifar_root / "cifar-10-batches-py")  # the same location, its files gone
    return args


def _missing_data_path(cifar_root: Path, args: list[str]) -> list[str]:
    return args + ["--data-path", str(cifar_root / "nowhere")]


def _missing_weights(cifar_root: Path, args: list[str]) -> list[str]:
    return args + ["--weights", str(cifar_root / "missing.pth")]


@pytest.mark.slow
@pytest.mark.parametrize("breakage", [_break_data, _missing_data_path, _missing_weights])
def test_overwrite_that_fails_validation_keeps_every_old_file(breakage, tmp_path, cifar_root, capsys):
    args = tiny_args(tmp_path / "res", cifar_root, "--run-name", RUN)
    assert main("ilm_vp", args) == 0
    run = run_folder(tmp_path / "res")
    before = files_of(run)
    assert {"ckpt.pth", "best.pth", "results.json", "metrics.jsonl", "config.json"} <= set(before)
    capsys.readouterr()
    assert main("ilm_vp", breakage(cifar_root, args + ["--overwrite"])) == 2
    one_error(capsys)
    assert files_of(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == [RUN]  # no lock file, nothing moved aside


@pytest.mark.slow
def test_overwrite_that_fails_in_its_first_epoch_puts_the_old_run_back(tmp_path, monkeypatch, capsys):
    root = write_image_folder(tmp_path / "data", ["a", "b"], {"train": 4, "test": 2}, size=16)
    args = tiny_args(tmp_path / "res", root, "--dataset", "folder", "--image-size", "16", "--run-name", RUN, "--epochs", "1", "--scheduler", "constant")
    assert main("ilm_vp", args) == 0
    run = tmp_path / "res" / "ilm_vp" / "folder" / "tiny_test_net" / RUN
    before = files_of(run)
    with monkeypatch.context() as patch:
        fail_in_first_epoch(patch, UserError("the first epoch failed"))
        assert main("ilm_vp", args + ["--overwrite"]) == 2
    assert one_error(capsys) == "error: the first epoch failed"
    assert files_of(run) == before
    with monkeypatch.context() as patch:
        fail_in_first_epoch(patch, KeyboardInterrupt())
        assert main("ilm_vp", args + ["--overwrite"]) == 130
    assert files_of(run) == before and sorted(p.name for p in run.parent.iterdir()) == [RUN]
    capsys.readouterr()
    # an unreadable image is found before anything moves
    (root / "train" / "a" / "0000.png").write_bytes(b"not a png")
    assert main("ilm_vp", args + ["--overwrite"]) == 2
    assert "0000.png" in one_error(capsys) and files_of(run) == before


@pytest.mark.slow
def test_overwrite_removes_the_old_run_only_once_the_new_one_has_a_checkpoint(tmp_path, cifar_root, monkeypatch):
    args = tiny_args(tmp_path / "res", cifar_root, "--run-name", RUN)
    assert main("ilm_vp", args) == 0
    run = run_folder(tmp_path / "res")
    (run / "old-note.txt").write_text("written by hand into the old run")
    previous = run.parent / f".{RUN}.previous"
    seen = []
    save = RunDir.save

    def spy(self, name, state):
        seen.append((name, previous.is_dir() and (previous / "old-note.txt").is_file(), (run / "old-note.txt").exists()))
        save(self, name, state)

    monkeypatch.setattr(RunDir, "save", spy)
    assert main("ilm_vp", args + ["--overwrite"]) == 0
    # until the first ckpt.pth the old run waits aside (and is not mixed into the new folder)
    assert seen[: [n for n, *_ in seen].index("ckpt.pth") + 1] == [("best.pth", True, False), ("ckpt.pth", True, False)]
    assert not previous.exists() and not (run / "old-note.txt").exists()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_an_overwrite_killed_midway_is_settled_at_the_next_start(tmp_path, cifar_root, capsys):
    args = tiny_args(tmp_path / "res", cifar_root, "--run-name", RUN)
    assert main("ilm_vp", args) == 0
    run = run_folder(tmp_path / "res")
    old = files_of(run)
    previous = run.parent / f".{RUN}.previous"
    # killed after moving the old run aside, before the new run's first checkpoint
    run.rename(previous)
    run.mkdir()
    (run / "config.json").write_text("{}")
    capsys.readouterr()
    assert main("ilm_vp", args) == 2
    assert "already holds a run" in one_error(capsys)
    assert files_of(run) == old and not previous.exists()
    # killed after the new run's first checkpoint, before the old one was deleted
    shutil.copytree(run, previous)
    (previous / "old-only.txt").write_text("old")
    rundir = RunDir(run)
    rundir.prepare(resume=True, overwrite=False, eval_only=False)
    rundir.release()
    assert not previous.exists() and files_of(run) == old


# ---------------------------------------------------------------------------------------------
# No empty folders


def test_runs_that_fail_before_their_first_checkpoint_leave_no_folder(tmp_path, cifar_root, monkeypatch, capsys):
    results = tmp_path / "res"
    assert main("ilm_vp", tiny_args(results, tmp_path / "no-data")) == 2
    assert not results.exists()
    results.mkdir()
    with monkeypatch.context() as patch:
        fail_in_first_epoch(patch, UserError("failed in epoch 1"))
        assert main("ilm_vp", tiny_args(results, cifar_root)) == 2
    assert list(results.iterdir()) == []
    capsys.readouterr()
    assert main("ilm_vp", tiny_args(results, cifar_root, "--resume")) == 2
    assert one_error(capsys).startswith("error: nothing to resume in ")
    assert main("ilm_vp", tiny_args(results, cifar_root, "--eval-only")) == 2
    assert one_error(capsys).endswith("(no best.pth or ckpt.pth)")
    assert list(results.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# One writer per run folder

HOLD = """
import sys, time
from pathlib import Path
from runner.run_lock import RunLock
RunLock.acquire(Path(sys.argv[1]), Path(sys.argv[2]))
print("locked", flush=True)
sys.stdin.read()  # held until the test kills this process
"""


@pytest.mark.slow
def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    lock, folder = tmp_path / ".run.lock", tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), str(folder)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=rf"run folder {folder} is in use by process {holder.pid} on .*running since"):
            RunLock.acquire(lock, folder)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    mine = RunLock.acquire(lock, folder)  # no stale lock after kill -9
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    mine.release()
    assert not lock.exists()
    RunLock.acquire(lock, folder).release()


def _start_holder(args: list[str], lock: Path) -> subprocess.Popen:
    """A run holding its folder (locked, config written) until a line or the end of its stdin."""
    holder = subprocess.Popen([sys.executable, str(REPO / "tests" / "run_holder.py"), "ilm_vp", *args], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    if "holding\n" not in iter(holder.stdout.readline, ""):  # the run's event (after its other lines), or its end if it failed
        holder.kill()
        raise AssertionError(f"the run never held its folder: {holder.communicate()[1]}")
    assert json.loads(lock.read_text())["pid"] == holder.pid
    return holder


@pytest.mark.slow
def test_a_second_run_into_a_folder_in_use_is_refused_at_once(tmp_path, cifar_root, capsys):
    args = tiny_args(tmp_path / "res", cifar_root, "--run-name", RUN)
    run = run_folder(tmp_path / "res")
    lock = run.parent / f".{RUN}.lock"
    holder = _start_holder(args, lock)
    try:
        for extra in ([], ["--overwrite"], ["--resume"], ["--eval-only"]):
            started = time.monotonic()
            assert main("ilm_vp", args + extra) == 2
            assert f"is in use by process {holder.pid} on " in one_error(capsys)
            assert time.monotonic() - started < 30  # refused at once, not after waiting
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # killed: no stale lock; it had no checkpoint yet, so a new run may start there
    holder = _start_holder(args, lock)
    _, err = holder.communicate("go\n", timeout=300)
    assert holder.returncode == 0, err
    assert not lock.exists()
    assert main("ilm_vp", args + ["--eval-only"]) == 0  # the finished run's folder is free again
    assert (run / "eval.json").is_file()


# ---------------------------------------------------------------------------------------------
# Write failures


class FailingWrites:
    """Make the ``n``-th write of a file named ``name`` fail with ``errno``, as the OS would."""

    def __init__(self, monkeypatch, name: str, n: int, code: int) -> None:
        import common.files
        import runner.run_dir
        import runner.snapshots

        self.name, self.n, self.code, self.calls = name, n, code, 0
        real = common.files.atomic_write_bytes

        def write(path, payload):
            if Path(path).name == self.name:
                self.calls += 1
                if self.calls == self.n:
                    raise OSError(self.code, os.strerror(self.code), str(path))
            real(path, payload)

        for module in (common.files, runner.run_dir, runner.snapshots):
            monkeypatch.setattr(module, "atomic_write_bytes", write)


def _fail_tensorboard_at_epoch_2(monkeypatch) -> None:
    from torch.utils.tensorboard import SummaryWriter

    add_scalar = SummaryWriter.add_scalar

    def failing(self, tag, value, step=None, *args, **kwargs):
        if step == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return add_scalar(self, tag, value, step, *args, **kwargs)

    monkeypatch.setattr(SummaryWriter, "add_scalar", failing)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The 3-epoch run that the interrupted ones must end exactly like (same data content)."""
    root = tmp_path_factory.mktemp("reference")
    write_cifar10_pickles(root)
    assert main("ilm_vp", tiny_args(root / "res", root, "--epochs", "3", "--run-name", RUN)) == 0
    return run_folder(root / "res")


def _model_and_accuracies(run: Path):
    ckpt = torch.load(run / "ckpt.pth", weights_only=False)
    return ckpt["model"], [json.loads(line)["test_acc"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize(
    "target, code, failing",
    [
        ("ckpt.pth", errno.ENOSPC, "ckpt.pth"),
        ("metrics.jsonl", errno.EROFS, "metrics.jsonl"),
        ("epoch_002.json", errno.EACCES, "mappings/epoch_002.json"),
        ("tensorboard", errno.ENOSPC, "tensorboard"),
    ],
)
def test_a_failed_write_keeps_the_last_checkpoint_and_resume_is_exact(target, code, failing, uninterrupted, tmp_path, cifar_root, monkeypatch, capsys):
    args = tiny_args(tmp_path / "res", cifar_root, "--epochs", "3", "--run-name", RUN)
    run = run_folder(tmp_path / "res")
    with monkeypatch.context() as patch:
        if target == "tensorboard":
            _fail_tensorboard_at_epoch_2(patch)
        else:
            FailingWrites(patch, target, 2 if target in ("ckpt.pth", "metrics.jsonl") else 1, code)
        capsys.readouterr()
        assert main("ilm_vp", args) == 2
    line = one_error(capsys)
    assert line.startswith(f"error: cannot write {run / failing}: {os.strerror(code)}; ckpt.pth and every file written before are intact"), line
    assert line.endswith("continue with --resume")
    assert torch.load(run / "ckpt.pth", weights_only=False)["epoch"] == 1
    assert not list(run.glob(".*.tmp")) and not (run.parent / f".{RUN}.lock").exists()
    assert main("ilm_vp", args + ["--resume"]) == 0
    (a_model, a_acc), (b_model, b_acc) = _model_and_accuracies(uninterrupted), _model_and_accuracies(run)
    assert a_acc == b_acc and len(b_acc) == 3
    assert all(torch.equal(a_model[k], b_model[k]) for k in a_model)
    assert sorted(p.name for p in (run / "mappings").iterdir()) == ["epoch_001.json", "epoch_002.json", "epoch_003.json"]


@pytest.mark.slow
def test_a_failed_write_before_the_first_checkpoint_abandons_the_run(tmp_path, cifar_root, monkeypatch, capsys):
    args = tiny_args(tmp_path / "res", cifar_root, "--run-name", RUN)
    with monkeypatch.context() as patch:
        FailingWrites(patch, "config.json", 1, errno.ENOSPC)
        assert main("ilm_vp", args) == 2
    assert one_error(capsys).endswith("No space left on device; the run had no checkpoint yet and is abandoned")
    assert not (tmp_path / "res").exists()
    assert main("ilm_vp", args) == 0
    run = run_folder(tmp_path / "res")
    before = files_of(run)
    with monkeypatch.context() as patch:
        FailingWrites(patch, "ckpt.pth", 1, errno.ENOSPC)
        assert main("ilm_vp", args + ["--overwrite"]) == 2
    assert one_error(capsys).endswith("the run had no checkpoint yet and is abandoned; the run it was replacing is put back")
    assert files_of(run) == before


@pytest.mark.slow
def test_a_new_run_clears_what_a_run_killed_before_its_first_checkpoint_left(tmp_path, cifar_root):
    run = run_folder(tmp_path / "res")
    (run / "tensorboard").mkdir(parents=True)
    (run / "tensorboard" / "events.out.tfevents.killed").write_bytes(b"epoch 1 of the killed run")
    (run / "best.pth").write_bytes(b"the killed run's epoch 1")
    (run / "launcher.log").write_text("$ python experiments/cnn/ilm_vp.py ...\n")  # tools/reproduce.py's log
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--run-name", RUN)) == 0
    assert (run / "launcher.log").read_text().startswith("$ python")
    assert not (run / "tensorboard" / "events.out.tfevents.killed").exists() and len(list((run / "tensorboard").iterdir())) == 1
    assert torch.load(run / "best.pth", weights_only=False)["epoch"] in (1, 2)
