"""The mapping-comparison sweep: every cell runs once, the table and verdicts come from results.json."""
from __future__ import annotations

import json

import pytest
from conftest import TINY_NETWORK

from tools.compare_mappings import main, method_for


def test_method_for_uses_named_scripts_where_they_exist():
    assert method_for("blm") == ("blm_vp", [])
    assert method_for("blmplus") == ("blmplus_vp", [])
    assert method_for("linear") == ("ilm_vp", ["--mapping", "linear"])


@pytest.mark.slow
def test_grid_writes_table_and_reuses_finished_runs(tmp_path, cifar_root):
    out = tmp_path / "cmp.md"
    argv = [
        "--network", TINY_NETWORK, "--data-path", str(cifar_root), "--results-path", str(tmp_path / "res"),
        "--max-train-samples", "30", "--max-test-samples", "20", "--epochs", "1", "--seeds", "1", "2",
        "--mappings", "ilm", "blm", "--prompts", "pad", "watermark", "--device", "cpu", "--output", str(out),
        "--", "--batch-size", "16",
    ]  # fmt: skip
    assert main(argv) == 0
    results = sorted((tmp_path / "res").rglob("results.json"))
    assert len(results) == 2 * 2 * 2
    text = out.read_text()
    accs = {}
    for path in results:
        config = json.loads((path.parent / "config.json").read_text())["config"]
        accs.setdefault((config["prompt"], config["mapping"]), []).append(json.loads(path.read_text())["final_test_acc"])
    assert config["batch_size"] == 16 and config["max_train_samples"] == 30
    for mapping in ("ilm", "blm"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {mapping} |"))
        assert f"{sum(accs[('pad', mapping)]) / 2:.2f} ±" in row
    assert text.count("BLM beats ILM") + text.count("BLM does **not** beat ILM") == 2
    stamps = [p.stat().st_mtime_ns for p in results]
    assert main(argv) == 0  # everything reused
    assert [p.stat().st_mtime_ns for p in results] == stamps
    # --report-only with a third seed: nothing runs, the missing cells are listed
    cut = argv.index("--")
    seeds_end = argv.index("--mappings")
    report = argv[:seeds_end] + ["3"] + argv[seeds_end:cut] + ["--report-only"] + argv[cut:]
    assert main(report) == 0
    assert len(sorted((tmp_path / "res").rglob("results.json"))) == 8
    assert "Not finished, so not in the table (4): pad / ilm / seed 3" in out.read_text()


def test_unknown_mapping_is_a_one_line_error(capsys):
    assert main(["--mappings", "ilm", "nope"]) == 2
    assert "error: argument --mappings: unknown mapping 'nope'; choose from blm, blmplus," in capsys.readouterr().err
