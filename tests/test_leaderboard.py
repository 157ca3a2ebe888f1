"""tools/leaderboard.py: every method under one protocol, resumable, its numbers those of the run folders."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, TINY_NETWORK

from algorithms.methods import FAMILIES, METHODS
from models.prompts import PROMPT_CHOICES
from runner.records import read_run
from tools import comparison
from tools.comparison.rows import CNN_ROWS


def test_every_registered_cnn_method_has_a_row():
    cnn = {m for m, spec in METHODS.items() if FAMILIES[spec.family].prompts is PROMPT_CHOICES} | {"linear_probing", "full_finetune"}
    assert cnn <= {row.method for row in CNN_ROWS}
    assert "head_vp" in cnn  # prompt + linear head is one of them


def test_the_pareto_front_by_hand():
    points = [(10, 50.0, "a"), (5, 40.0, "b"), (20, 45.0, "c"), (30, 60.0, "d"), (5, 30.0, "e")]
    assert [p[2] for p in comparison.pareto_front(points)] == ["b", "a", "d"]


def test_time_is_the_median_over_seeds_and_the_machines_are_named():
    from tools.comparison.cli import computed_on
    from tools.comparison.table import Entry, markdown

    slowed = Entry("ILM-VP", "dtd10", "net", False, [1, 2, 3], val_selected={1: 50.0, 2: 52.0, 3: 54.0},
                   epoch_seconds={1: 20.0, 2: 22.0, 3: 170.0}, machines={1: "", 2: "cpu A", 3: "cpu A"})  # fmt: skip
    (line,) = [row for row in markdown({("ILM-VP", "dtd10", "net"): slowed}).splitlines() if "ILM-VP" in row]
    assert "| 52.0 ± 2.0 |" in line and "| 22.0 [20.0, 170.0] |" in line  # a neighbour's slowdown moves the median less than a mean (70.7)
    said = computed_on({("ILM-VP", "dtd10", "net"): slowed})
    assert said.startswith("Computed on: cpu A: 2 runs; not recorded") and "compare only between runs of one machine" in said


def printed(argv: list[str]) -> tuple[list[list[str]], str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert comparison.main(argv) == 0, err.getvalue()
    return [shlex.split(line) for line in out.getvalue().splitlines()], err.getvalue()


def test_every_row_runs_on_the_same_data_split_epochs_and_seeds(tmp_path, cifar_root):
    argv = ["--datasets", "cifar10", "--network", TINY_NETWORK, "--data-path", str(cifar_root), "--results-path", str(tmp_path),
            "--seeds", "1", "2", "--epochs", "3", "--launcher", "print", "--search-config", "ilm_vp --prompt watermark --mapping flm",
            "--", "--batch-size", "16"]  # fmt: skip
    commands, err = printed(argv)
    rows = list(comparison.CNN_ROWS)
    assert len(commands) == 2 * (len(rows) + 1)  # every row and the search's choice, two seeds each
    assert {Path(c[1]).stem for c in commands} == {r.method for r in rows}
    for command in commands:
        flags = command[2:]
        assert flags[:6] == ["--dataset", "cifar10", "--max-train-samples", "1000", "--max-test-samples", "500"]
        assert "--val-fraction" in flags and flags[flags.index("--val-fraction") + 1] == "0.1" and flags[-2:] == ["--batch-size", "16"]
        assert flags[flags.index("--epochs") + 1] == "3" and flags[flags.index("--seed") + 1] in ("1", "2")
    assert sum("--watermark" in " ".join(c) or ("watermark" in c and "flm" in c) for c in commands) == 2
    assert "CLIP section skipped:" in err  # no CLIP weights on this machine: one line


def test_the_slurm_array_holds_the_printed_commands_and_says_to_report_after(tmp_path, cifar_root):
    argv = ["--datasets", "cifar10", "--network", TINY_NETWORK, "--data-path", str(cifar_root), "--results-path", str(tmp_path),
            "--seeds", "1", "--epochs", "2", "--no-clip", "--", "--batch-size", "16"]  # fmt: skip
    commands, _ = printed([*argv[:-3], "--launcher", "print", *argv[-3:]])
    _, err = printed([*argv[:-3], "--launcher", "slurm", "--slurm-name", "board", *argv[-3:]])
    tasks = (tmp_path / "slurm" / "board.jobs.tsv").read_text().splitlines()
    assert len(tasks) == len(commands) and all(" ".join(map(shlex.quote, c[1:])) in task for c, task in zip(commands, tasks, strict=True))
    assert (tmp_path / "slurm" / "board.sbatch").is_file() and "then run this command again with --report-only" in err
    assert not (tmp_path / "leaderboard").exists()  # the board is written by --report-only, after the array


def test_the_protocol_cannot_be_changed_per_run(tmp_path, cifar_root, capsys):
    argv = ["--datasets", "cifar10", "--data-path", str(cifar_root), "--results-path", str(tmp_path), "--launcher", "print", "--", "--epochs", "9"]
    assert comparison.main(argv) == 2
    assert capsys.readouterr().err.strip().startswith("error: --epochs is set by the protocol")


@pytest.mark.slow
def test_a_tiny_comparison_is_resumable_and_its_numbers_are_the_run_folders(tmp_path, cifar_root):
    python = tmp_path / "py"  # the method scripts with the tiny network registered
    python.write_text(f'#!/bin/bash\nexec {sys.executable} {REPO / "tests" / "search_entry.py"} "$@"\n')
    python.chmod(0o755)
    results = tmp_path / "res"
    # the first run holds after its first epoch's checkpoint until the SIGTERM below (tests/search_entry.py), so it always lands mid-run
    argv = ["--datasets", "cifar10", "--network", TINY_NETWORK, "--data-path", str(cifar_root), "--results-path", str(results), "--seeds", "1",
            "--epochs", "3", "--rows", "ILM-VP", "linear probing", "--no-clip", "--python", str(python), "--", "--batch-size", "8", "--device", "cpu"]  # fmt: skip
    entry = [sys.executable, "-c", f"import sys; sys.path[:0] = [{str(REPO / 'tests')!r}, {str(REPO)!r}]; import conftest; "
             "from tools.comparison import main; sys.exit(main(sys.argv[1:]))"]  # fmt: skip
    hold = {**os.environ, "VP_TEST_HOLD_ONCE": str(tmp_path / "held")}
    first = subprocess.Popen([*entry, *argv], cwd=REPO, stderr=subprocess.PIPE, text=True, env=hold)
    deadline = time.time() + 300
    while time.time() < deadline and not list(results.rglob("ckpt.pth")):
        time.sleep(0.2)
    first.send_signal(signal.SIGTERM)  # the comparison is stopped: its run stops with a checkpoint
    assert first.wait(timeout=300) == 130, first.stderr.read()[-3000:]
    assert (tmp_path / "held").is_file(), "the first run did not hold after its checkpoint"
    stopped = [p.parent for p in results.rglob("ckpt.pth") if not (p.parent / "results.json").is_file()]
    assert stopped, "a run was cut off before its end"
    done = subprocess.run([*entry, *argv], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    for run in stopped:  # the cut-off run was continued, not started again
        starts = [line for line in (run / "launcher.log").read_text().splitlines() if line.startswith("$ ")]
        assert len(starts) == 2 and starts[-1].endswith("--resume")
    board = json.loads((results / "leaderboard" / "leaderboard.json").read_text())
    for row in board["rows"]:
        (run_dir,) = row["run_dirs"].values()
        results_json = read_run(Path(run_dir)).results
        assert row["val_selected_mean"] == results_json["val_selected_test_acc"] and row["trainable_params"] == results_json["trainable_params"]
        assert row["best_on_test"]["1"] == results_json["best_test_acc"] and row["peak_memory_mb"]["1"] == results_json["peak_memory_mb"]
        assert row["epoch_seconds_median"] == results_json["mean_epoch_seconds"] and row["machines"]["1"] == read_run(Path(run_dir)).machine != ""
        assert "train 1000" in row["differences"]  # cifar10 here is the 1000/500 subset: marked
    text = (results / "leaderboard" / "leaderboard.md").read_text()
    assert "| cifar10 | tiny_test_net | ILM-VP |" in text and "§ test 500, train 1000" in text and "*linear probing* (reference)" in text
    logs = {p: p.read_text() for p in results.rglob("launcher.log")}
    again = subprocess.run([*entry, *argv], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "2 finished (read), 0 to run" in again.stderr
    assert {p: p.read_text() for p in results.rglob("launcher.log")} == logs  # nothing trained again
