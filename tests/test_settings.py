"""algorithms/settings.py: what names a run folder, and that the data's location is part of it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from algorithms.settings import ARITHMETIC, DATA_LOCATION, RunConfig, arithmetic_of, precision_change, result_settings
from common.errors import UserError


def test_the_data_location_is_part_of_the_identity_and_costs_no_file_access(tmp_path):
    a = RunConfig(method="ilm_vp", dataset="folder", data_path=str(tmp_path / "flowers"))
    b = RunConfig(method="ilm_vp", dataset="folder", data_path=str(tmp_path / "pets"))
    assert a.identity()[DATA_LOCATION] == str((tmp_path / "flowers").resolve())  # need not exist
    assert a.config_hash() != b.config_hash() and a.run_path() != b.run_path()
    assert a.run_path().parent == b.run_path().parent  # same method, dataset, network


def test_one_data_root_written_two_ways_is_one_run_folder(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    paths = ["data", "./data/", str(tmp_path / "data"), "link"]
    hashes = {RunConfig(method="ilm_vp", data_path=p).config_hash() for p in paths}
    assert len(hashes) == 1


def test_execution_details_and_paths_as_typed_stay_out_of_the_identity(tmp_path):
    base = RunConfig(method="ilm_vp", data_path=str(tmp_path))
    for change in ({"device": "cuda"}, {"results_path": "/elsewhere"}, {"run_name": "x"}, {"data_path": str(tmp_path) + os.sep}):
        assert RunConfig(**{**base.to_dict(), **change}).config_hash() == base.config_hash(), change
    assert RunConfig(**{**base.to_dict(), "lr": 0.5}).config_hash() != base.config_hash()
    saved = base.to_dict()
    assert result_settings(saved) == {k: v for k, v in base.identity().items() if k != DATA_LOCATION}


@pytest.mark.slow
def test_batch_dependence_is_resolved_while_parsing_and_the_hash_needs_no_import(tmp_path):
    """SMM with --micro-batch: the chunk joins the identity; a config.json read back in an
    interpreter that imported no method gives the same folder name (no import-order effect)."""
    import json
    import subprocess
    import sys

    from runner.config import build_parser, config_from_args

    args = ["--prompt", "smm", "--micro-batch", "8", "--data-path", str(tmp_path)]
    parsed = config_from_args("ilm_vp", build_parser("ilm_vp").parse_args(args))
    assert parsed.resolved == {"batch_dependent": True, "augment": "resize32_crop_flip"} and parsed.identity()["micro_batch"] == 8
    assert parsed.identity()["augment"] == "resize32_crop_flip"  # SMM's recipe, from the same import-free config.json
    pad = config_from_args("ilm_vp", build_parser("ilm_vp").parse_args(["--micro-batch", "8", "--data-path", str(tmp_path)]))
    assert pad.resolved == {"batch_dependent": False, "augment": "none"} and "micro_batch" not in pad.identity()
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(parsed.to_dict()))
    code = (
        "import json, sys; from algorithms.settings import RunConfig; "
        "assert 'algorithms.methods' not in sys.modules; "
        f"print(RunConfig.from_dict(json.loads(open({str(saved)!r}).read())).config_hash())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == parsed.config_hash()


def test_an_unresolved_config_refuses_to_guess_its_batch_dependence():
    with pytest.raises(ValueError, match="resolve_settings"):
        RunConfig(method="ilm_vp", prompt="smm", micro_batch=8).identity()


# ---------------------------------------------------------------------------------------------
# The arithmetic a run computes in (issue 23): part of the identity off the CPU

# today's folder hashes, computed before the arithmetic joined the identity: a CPU run keeps its folder
CPU_FOLDERS = {
    ("ilm_vp", ()): "7ebbb4a9",
    ("ilm_vp", ("--precision", "bf16")): "a1d3625a",
    ("ilm_vp", ("--eval-batch-size", "500")): "0bc7683e",
    ("ilm_vp", ("--compile",)): "7ebbb4a9",
    ("ilm_tp_vp", ("--precision", "bf16")): "b19bb48f",
    ("linear_probing", ("--eval-batch-size", "500")): "8c7259f9",
    ("full_finetune", ()): "046b7245",  # augmented: moved by the per-sample augmentation draws (60a9dac1 before), not by the arithmetic
    ("full_finetune", ("--augment", "none")): "419e9ea2",
    # moved by its per-part initialisation (init_seeding, 940fa464 before that) and, augmented by default,
    # by the per-sample augmentation draws; not by the arithmetic
    ("smm_vp", ("--precision", "bf16")): "91d5cf8a",
}


@pytest.mark.parametrize("method, flags", list(CPU_FOLDERS))
def test_cpu_runs_keep_their_folders_once_the_arithmetic_is_resolved(method, flags):
    from dataclasses import replace

    from runner.config import build_parser, config_from_args
    from runner.devices import arithmetic, planned_arithmetic

    config = config_from_args(method, build_parser(method).parse_args(["--data-path", "/datasets", *flags]))
    resolved = planned_arithmetic("cpu", config.precision)
    assert resolved is None and arithmetic("cpu", "bf16") is None
    # legacy: the name of the folder a run of these flags was made in, where it is still found
    # (--eval-batch-size has left the hash since: runner.run_dir.run_folder, tests/test_run_identity.py)
    assert replace(config, arithmetic=resolved).config_hash(legacy=True) == CPU_FOLDERS[(method, flags)]


def test_a_cuda_run_and_a_cpu_run_of_the_same_flags_get_two_folders(tmp_path):
    from runner.devices import arithmetic

    cpu = RunConfig(method="ilm_vp", data_path=str(tmp_path))
    fp16 = RunConfig(**{**cpu.to_dict(), "arithmetic": arithmetic("cuda", "fp16")})
    bf16 = RunConfig(**{**cpu.to_dict(), "arithmetic": arithmetic("cuda", "bf16")})
    assert fp16.identity()[ARITHMETIC] == "cuda-fp16" and ARITHMETIC not in cpu.identity()
    assert len({cpu.config_hash(), fp16.config_hash(), bf16.config_hash()}) == 3
    # asking to continue in another precision is not a setting of the run
    assert RunConfig(**{**fp16.to_dict(), "allow_precision_change": True}).config_hash() == fp16.config_hash()


def test_planned_arithmetic_of_an_explicit_gpu_on_a_machine_without_one():
    from runner.devices import planned_arithmetic

    if torch.cuda.is_available():
        pytest.skip("plans for this machine's GPU")
    assert planned_arithmetic("cuda", "auto", cuda_auto="fp16") == "cuda-fp16"
    assert planned_arithmetic("cuda:1", "bf16") == "cuda-bf16"
    assert planned_arithmetic("auto", "auto") is None


def test_a_precision_change_is_refused_unless_allowed():
    cpu = RunConfig(method="ilm_vp").identity()
    fp16 = {**cpu, ARITHMETIC: "cuda-fp16"}
    assert arithmetic_of(cpu) == "cpu-fp32" and arithmetic_of({**cpu, "precision": "bf16"}) == "cpu-bf16"
    assert precision_change(cpu, {**cpu, "precision": "fp32"}, False, "x") is None  # auto is fp32 on a CPU
    with pytest.raises(UserError, match="checkpoint ck.pth was computed in cuda-fp16, this run computes in cpu-fp32"):
        precision_change(fp16, cpu, False, "ck.pth")
    with pytest.raises(UserError, match="--allow-precision-change"):
        precision_change(cpu, {**cpu, "precision": "bf16"}, False, "ck.pth")
    note = precision_change(fp16, cpu, True, "ck.pth")
    assert note and "cuda-fp16" in note and "cpu-fp32" in note
