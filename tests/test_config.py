"""runner/config.py and common/argtypes.py: every numeric flag is checked where it is parsed."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from conftest import REPO, tiny_args

from common.argtypes import float_in, fraction, int_in, open_fraction, positive_float, positive_int, yes_no
from runner.cli import main


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err and not captured.out.strip()
    return lines[0]


@pytest.mark.parametrize(
    "flag, value, expected",
    [
        ("--epochs", "0", "must be an integer >= 1, got 0"),
        ("--epochs", "-1", "must be an integer >= 1, got -1"),
        ("--epochs", "2.5", "expected an integer, got '2.5'"),
        ("--batch-size", "0", "must be an integer >= 1"),
        ("--eval-batch-size", "-4", "must be an integer >= 1"),
        ("--image-size", "0", "must be an integer >= 1"),
        ("--max-train-samples", "0", "must be an integer >= 1"),
        ("--max-test-samples", "-3", "must be an integer >= 1"),
        ("--lr", "-1", "must be > 0, got -1"),
        ("--lr", "0", "must be > 0, got 0"),
        ("--lr", "nan", "expected a finite number, got 'nan'"),
        ("--lr", "fast", "expected a number, got 'fast'"),
        ("--momentum", "-0.1", "must be in [0, 1]"),
        ("--weight-decay", "-0.01", "must be >= 0, got -0.01"),
        ("--gamma", "0", "must be > 0, got 0"),
        ("--milestones", "1.5", "must be in [0, 1]"),
        ("--warmup-steps", "-1", "must be an integer >= 0"),
        ("--train-fraction", "0", "must be in (0, 1]"),
        ("--train-fraction", "1.5", "must be in (0, 1]"),
        ("--val-fraction", "1", "must be in [0, 1)"),
        ("--val-fraction", "-0.2", "must be in [0, 1)"),
        ("--mapping-interval", "0", "must be an integer >= 1"),
        ("--log-interval", "0", "must be an integer >= 1"),
        ("--mapping-lr", "-0.5", "must be > 0, got -0.5"),
        ("--resident-data", "maybe", "expected true or false, got 'maybe'"),
    ],
)
def test_bad_values_are_one_error_line_before_anything_runs(flag, value, expected, tmp_path, cifar_root, capsys):
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, flag, value)) == 2
    assert _one_error_line(capsys).startswith(f"error: argument {flag}: {expected}")
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize(
    "method, flag, value, expected",
    [
        ("clip_linear_probe", "--c-values", "0", "must be > 0, got 0"),
        ("clip_linear_probe", "--max-iter", "0", "must be an integer >= 1, got 0"),
        ("clip_linear_probe", "--batch-size", "0", "must be an integer >= 1, got 0"),
        ("ilm_tp_vp", "--template-number", "81", "must be an integer in 0..80, got 81"),
        ("ilm_tp_vp", "--prompt-size", "0", "must be an integer >= 1, got 0"),
    ],
)
def test_method_flags_are_checked_too(method, flag, value, expected, tmp_path, capsys):
    assert main(method, ["--results-path", str(tmp_path / "res"), flag, value]) == 2
    assert _one_error_line(capsys) == f"error: argument {flag}: {expected} (see --help)"


def test_unknown_flags_and_choices_are_one_error_line(tmp_path, cifar_root, capsys):
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--no-such-flag")) == 2
    assert _one_error_line(capsys) == "error: unrecognized arguments: --no-such-flag (see --help)"
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--optimizer", "lion")) == 2
    assert _one_error_line(capsys).startswith("error: argument --optimizer: invalid choice: 'lion'")


def test_boundary_values_are_accepted():
    assert positive_int("1") == 1 and int_in(0, 80)("80") == 80 and int_in(0)("0") == 0
    assert fraction("1") == 1.0 and fraction("1e-9") == 1e-9
    assert float_in(0.0, 1.0, high_open=True)("0") == 0.0  # --val-fraction 0: no validation split
    assert positive_float("1e-12") == 1e-12 and open_fraction("0.5") == 0.5
    assert yes_no("TRUE") is True and yes_no("off") is False
    for parse, text in [(open_fraction, "1"), (open_fraction, "0"), (int_in(0, 80), "-1"), (positive_float, "inf")]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


@pytest.mark.slow
def test_a_script_reports_a_bad_value_without_a_traceback(tmp_path):
    script = REPO / "experiments" / "cnn" / "ilm_vp.py"
    result = subprocess.run(
        [sys.executable, str(script), "--lr", "-1", "--results-path", str(tmp_path / "r")],
        cwd=tmp_path, env={"VP_DOWNLOAD": "0", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and result.stderr == "error: argument --lr: must be > 0, got -1 (see --help)\n"
