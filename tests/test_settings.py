"""algorithms/settings.py: what names a run folder, and that the data's location is part of it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from algorithms.settings import DATA_LOCATION, RunConfig, result_settings


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
