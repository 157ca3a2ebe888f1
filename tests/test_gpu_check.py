"""tools/gpu_check.py on a machine without CUDA: its clear refusal, its plan, and its table from fake runs."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import REPO

from common.errors import UserError
from tools import gpu_checks as gc


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_cuda_it_says_so_in_one_line_and_exits_2():
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_check.py")], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: tools/gpu_check.py checks the CUDA paths and needs a CUDA GPU; this machine has none (torch.cuda.is_available() is False)"
    ]


def test_every_method_family_is_checked_against_fp32_and_each_feature_against_the_plain_run():
    from algorithms.methods import FAMILIES, get_method

    runs, checks = gc.plan()
    by_name = {r.name: r for r in runs}
    assert len(by_name) == len(runs)
    checked_families = {get_method(by_name[c.subject].method).family for c in checks}
    assert checked_families == set(FAMILIES)  # every family, CLIP's two included
    for c in checks:
        subject, reference = by_name[c.subject], by_name[c.reference]
        if c.reference.endswith("-fp32"):
            assert reference.flags == (*subject.flags, "--precision", "fp32") and reference.method == subject.method
        else:
            assert reference.name == "ilm_vp" and subject.method == "ilm_vp"
    assert {"compile", "micro_batch_auto", "resume", "streamed", "eval_batch_256"} <= {c.label for c in checks}
    assert "compile_max" not in {c.label for c in checks} and [c.label for c in gc.plan(["compile_max"])[1]] == ["compile_max"]
    assert by_name["resume"].interrupt_after == 1
    runs, checks = gc.plan(["resume", "smm_vp"])
    assert {r.name for r in runs} == {"resume", "ilm_vp", "smm_vp", "smm_vp-fp32"} and len(checks) == 2
    with pytest.raises(UserError, match="unknown check nope"):
        gc.plan(["nope"])


def test_the_resume_check_interrupts_then_resumes(tmp_path):
    (first, second) = gc.commands(gc.Run("resume", "ilm_vp", ("--network", "resnet18"), interrupt_after=1), ["--epochs", "2"])
    assert first[1:4] == [str(REPO / "tools" / "gpu_check.py"), "--interrupted-run", "1"] and first[4] == "ilm_vp"
    assert second[-1] == "--resume" and second[1].endswith("ilm_vp.py") and second[2:-1] == first[5:]


def write_run(folder, acc: float, losses: list[float], mapping: dict | None, precision: str = "fp16") -> None:
    run = folder / "ilm_vp" / "cifar10" / "resnet18" / "seed7-x"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"final_test_acc": acc, "best_test_acc": acc + 1}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "train_loss": v}) + "\n" for i, v in enumerate(losses)))
    (run / "config.json").write_text(json.dumps({"resolved": {"precision": precision}}))
    if mapping is not None:
        (run / "mappings").mkdir()
        (run / "mappings" / "epoch_001.json").write_text(json.dumps(mapping))


def test_the_table_from_fake_runs(tmp_path):
    same = {"airplane": "a", "cat": "b"}
    write_run(tmp_path / "ok", 31.5, [2.1, 1.9], same)
    write_run(tmp_path / "ref", 30.0, [2.2, 2.0], same, precision="fp32")
    write_run(tmp_path / "nan", 12.0, [2.1, math.nan], {"airplane": "b", "cat": "a"})
    ok, ref, nan = (gc.read_outcome(tmp_path / n, 0, 12.0) for n in ("ok", "ref", "nan"))
    assert ok.test_acc == 31.5 and ok.losses == [2.1, 1.9] and ok.first_mapping == same and ok.precision == "fp16"
    crashed = gc.read_outcome(tmp_path / "missing", 1, 3.0)
    rows = [
        gc.compare(gc.Check("ilm_vp", "ilm_vp", "ilm_vp-fp32"), ok, ref, tolerance=2.0),
        gc.compare(gc.Check("smm_vp", "smm_vp", "smm_vp-fp32"), nan, ref, tolerance=2.0),
        gc.compare(gc.Check("compile", "compile", "ilm_vp"), crashed, ok, tolerance=2.0),
    ]
    assert rows[0]["verdict"] == "ok" and rows[0]["delta"] == pytest.approx(1.5) and rows[0]["mapping"] == "same"
    assert rows[1]["verdict"] == "FAIL: a non-finite training loss, accuracy off by more than 2 points, another first-epoch mapping"
    assert rows[2]["verdict"] == "FAIL: run exit 1" and rows[2]["acc"] is None
    lines = gc.table(rows, 2.0).splitlines()
    assert lines[0].startswith("| check | against | precision |") and "tolerance 2" in lines[0]
    assert lines[2] == "| ilm_vp | ilm_vp-fp32 | fp16 | 31.50 | 30.00 | +1.50 | yes | same | 12 | ok |"
    assert "| NO | differs |" in lines[3] and lines[4].startswith("| compile | ilm_vp | - | - | - | - | - | - | 3 | FAIL: run exit 1 |")
    assert lines[-1] == "1 of 3 checks ok, 2 FAILED"
    assert all(line.count("|") == lines[0].count("|") for line in lines[:5])


def test_every_planned_command_parses_with_its_method_script_flags(tmp_path):
    """What the GPU session will run: each run's flags are accepted by its method's parser."""
    from runner.config import build_parser

    runs, _ = gc.plan([*gc.FAMILIES, *gc.FEATURES, "resume"])
    common = ["--dataset", "cifar10", "--data-path", str(tmp_path), "--max-train-samples", "20", "--max-test-samples", "10",
              "--epochs", "2", "--seed", "7", "--device", "cuda", "--results-path", str(tmp_path)]  # fmt: skip
    for run in runs:
        flags = [*common, "--weights", "w.pth"] if gc.NETWORK in run.flags else list(common)
        if not gc.trains_epochs(run.method):
            flags = flags[:8] + flags[10:]  # no --epochs
        for cmd in gc.commands(run, flags):
            argv = cmd[5:] if "--interrupted-run" in cmd else cmd[2:]
            build_parser(run.method).parse_args([a for a in argv if a != "--resume"] + (["--resume"] if "--resume" in argv else []))
