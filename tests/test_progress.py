"""The steps longer than a few seconds show a progress bar: text encoding, zero-shot, feature caching."""
from __future__ import annotations

import subprocess
import sys

import pytest
from clip_helpers import tiny_clip_args
from conftest import REPO, tiny_args

import cfg
from common import progress
from runner.cli import main


@pytest.fixture
def bars(monkeypatch):
    """Every progress bar the run opens, as (description, total), in order."""
    opened = []
    real_bar = progress.bar

    def recording_bar(iterable=None, *, desc, total=None, **kwargs):
        opened.append((desc, len(iterable) if total is None and hasattr(iterable, "__len__") else total))
        return real_bar(iterable, desc=desc, total=total, **kwargs)

    monkeypatch.setattr(progress, "bar", recording_bar)
    return opened


@pytest.mark.slow
def test_clip_run_shows_text_encoding_and_zero_shot(tmp_path, cifar_root, bars, monkeypatch):
    monkeypatch.setattr(cfg, "CACHE_PATH", tmp_path / "cache")  # no text embeddings cached by other tests
    assert main("ilm_tp_vp", tiny_clip_args(tmp_path, cifar_root, "--epochs", "1")) == 0
    described = dict(bars)
    assert described["encode text prompts"] == 81 * 10  # every template x class text
    assert described["zero-shot test"] == 1  # 20 test images, one evaluation batch of 32
    assert [d for d, _ in bars].index("zero-shot test") < [d for d, _ in bars].index("epoch 1 train")


@pytest.mark.slow
def test_linear_probing_shows_the_feature_cache(tmp_path, cifar_root, bars):
    assert main("linear_probing", tiny_args(tmp_path, cifar_root, "--epochs", "1")) == 0
    described = dict(bars)
    assert described["feature cache (train)"] == 2 and described["feature cache (test)"] == 1  # 50 / 20 images, batches of 32


# ---------------------------------------------------------------------------------------------
# Off a terminal: a few plain lines


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_a_long_step_prints_one_line_per_interval(monkeypatch, capsys):
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    with progress.console(interval=60.0):
        assert not progress.on_terminal()  # pytest captures: not a terminal
        shown = progress.bar(range(1000), desc="decode images", unit="img")
        for i in shown:
            clock.now += 0.5  # 500 s over the whole step: 8 lines at 60 s, not one per update
            if i == 10:
                shown.set_postfix(loss="0.123")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8
    assert lines[0].startswith("decode images: 120/1000 img (60s, 2.0 img/s, loss=0.123)")
    assert "\r" not in "".join(lines)


def test_disabled_and_quiet_bars_print_nothing(monkeypatch, capsys):
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    for kwargs, enabled in (({}, False), ({"quiet": True}, True)):
        with progress.console(interval=1.0, **kwargs):
            for _ in progress.bar(range(50), desc="x", enabled=enabled):
                clock.now += 10
    assert capsys.readouterr().out == ""


def test_quiet_keeps_warnings_and_the_result_and_the_log_file_keeps_all(tmp_path, capsys):
    log = tmp_path / "logs" / "run.log"
    with progress.console(quiet=True, log_file=log):
        print("run folder: somewhere")
        progress.line("epoch 1/2 ...")
        print("warning: something", file=sys.stderr)
        progress.result("done: test accuracy 50.00%")
    out, err = capsys.readouterr()
    assert out == "done: test accuracy 50.00%\n" and err == "warning: something\n"
    assert log.read_text().splitlines() == ["run folder: somewhere", "epoch 1/2 ...", "warning: something", "done: test accuracy 50.00%"]
    print("after")  # the console is restored
    assert capsys.readouterr().out == "after\n"


_RUN = """
import sys
sys.path.insert(0, {tests!r})
import conftest  # registers the tiny network
from runner.cli import main
sys.exit(main("ilm_vp", conftest.tiny_args(*sys.argv[1:3], "--epochs", "3", *sys.argv[3:])))
"""


def run_piped(tmp_path, cifar_root, *flags: str) -> subprocess.CompletedProcess:
    """The tiny run in a subprocess whose stdout and stderr are pipes (as under SLURM or nohup)."""
    code = _RUN.format(tests=str(REPO / "tests"))
    return subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "r"), str(cifar_root), *flags],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_a_run_with_piped_output_prints_a_few_lines(tmp_path, cifar_root):
    done = run_piped(tmp_path, cifar_root, "--log-file", str(tmp_path / "copy.log"))
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert len(out) + len(done.stderr.splitlines()) <= 12 and "\r" not in done.stdout + done.stderr
    assert [line.split()[1] for line in out if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    assert out[-1].startswith("done: test accuracy")
    assert (tmp_path / "copy.log").read_text() == done.stdout + done.stderr  # nothing on stderr here but warnings


@pytest.mark.slow
def test_quiet_run_prints_only_the_result_line(tmp_path, cifar_root):
    done = run_piped(tmp_path, cifar_root, "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [line for line in done.stdout.splitlines() if line.startswith("done: ")] and done.stdout.count("\n") == 1
