"""tools/search.py owns its runs: killing the search (SIGKILL or SIGTERM) leaves no run alive and the
next search continues the cut-off trial at once; bad axes are refused before a study exists; a
search whose every trial fails exits non-zero with one line per failure naming its log."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from test_search import base_args, fake_python, launches, load, worker

from tools import config_search as search

optuna = pytest.importorskip("optuna")


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_for(condition, seconds: float = 120.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_search_leaves_no_run_alive_and_the_next_one_continues_its_trial_at_once(how, tmp_path, monkeypatch, cifar_root):
    # the first run stops after its first epoch until killed: the kill lands mid-run however slow the machine
    runs = {"default": {"val": [20, 30, 40], "sleep": 0.2, "hold_first": True}}
    python, log = fake_python(tmp_path, monkeypatch, runs)
    results = tmp_path / "res"
    # the default heartbeat (60 s): the cut-off trial is queued again because its process is gone, not by a timeout
    argv = base_args(results, cifar_root, python, "--prompts", "pad", "watermark", "--mappings", "ilm", "rlm", "--trials", "2",
                     "--epochs", "3", "--final-seeds", "0")  # fmt: skip
    proc = worker(tmp_path, argv, "killed")
    assert wait_for(lambda: list(results.rglob("ckpt.pth"))), "the first epoch finished"
    (start,) = [json.loads(line) for line in Path(log).read_text().splitlines()]
    os.kill(proc.pid, how)  # the search alone: its run is not in its process group
    proc.wait(timeout=150)
    assert wait_for(lambda: not alive(start["pid"]), 30), "the run died with the search"
    study, _ = load(results)
    assert [t.state.name for t in study.trials] == (["RUNNING"] if how == signal.SIGKILL else ["FAIL"])
    began = time.time()
    assert search.main(argv) == 0
    assert time.time() - began < 60  # no heartbeat grace period waited
    study, _ = load(results)
    states = [t.state.name for t in study.trials]
    assert states[0] == "FAIL" and states.count("COMPLETE") == 2
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1 and retried[0].params == study.trials[0].params and retried[0].state.name == "COMPLETE"
    assert start["argv"] + ["--resume"] in launches(log)  # the cut-off run continued from its checkpoint


def test_a_bad_axis_is_refused_before_any_study_exists(tmp_path, monkeypatch, cifar_root, capsys):
    python, _ = fake_python(tmp_path, monkeypatch, {})
    for axis in (["--schedulers", "foo"], ["--augments", "nope"], ["--input-sizes", "-3"]):
        argv = base_args(tmp_path / "res", cifar_root, python, "--prompts", "pad", "--mappings", "ilm", *axis)
        assert search.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and axis[0] in err[0], err
    assert not (tmp_path / "res" / "search").exists()


def test_the_scripts_augmentation_names_are_accepted(tmp_path, monkeypatch, cifar_root):
    python, log = fake_python(tmp_path, monkeypatch, {"default": {"val": [20]}})
    argv = base_args(tmp_path / "res", cifar_root, python, "--prompts", "pad", "--mappings", "ilm", "--trials", "1", "--epochs", "1",
                     "--final-seeds", "0")  # fmt: skip
    argv[argv.index("--augments") + 1] = "trivialaugment_wide+pad_crop_flip"
    assert search.main(argv) == 0
    assert "trivialaugment_wide+pad_crop_flip" in launches(log)[0]


def test_a_search_whose_every_trial_fails_exits_non_zero_with_one_line_per_trial(tmp_path, monkeypatch, cifar_root, capsys):
    python, _ = fake_python(tmp_path, monkeypatch, {"default": {"fail": "error: a bad day (a test)"}})
    argv = base_args(tmp_path / "res", cifar_root, python, "--prompts", "pad", "--mappings", "ilm", "rlm", "--trials", "2",
                     "--epochs", "1", "--final-seeds", "0")  # fmt: skip
    assert search.main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    failed = [line for line in err if " fail: " in line]
    assert len(failed) == 2 and not any("Traceback" in line for line in err)
    for line in failed:
        log = Path(line.split("(log: ")[1].split(")")[0])
        assert "error: a bad day (a test)" in line and log.is_file() and "error: a bad day" in log.read_text()
    assert err[-1].startswith("error: no trial of study") and "2 failed" in err[-1]
