"""tools/make_table.py on synthetic run folders: statistics, missing runs, paper values, protocol."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from tool_fixtures import fake_run

from tools import tables as mt


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for seed, acc in zip((1, 2, 3), (10.0, 20.0, 30.0)):
        fake_run(root, "ilm_vp", "flowers102", "resnet18", seed, acc)
    fake_run(root, "flm_vp", "flowers102", "resnet18", 1, 12.0)
    fake_run(root, "flm_vp", "flowers102", "resnet18", 2, 14.0)
    fake_run(root, "flm_vp", "flowers102", "resnet18", 3, None, done=2)  # interrupted
    fake_run(root, "ilm_vp", "dtd", "resnet18", 1, 40.0)
    fake_run(root, "ilm_vp", "dtd", "resnet18", 2, 42.0)  # seed 3 never ran
    fake_run(root, "flm_vp", "dtd", "resnet18", 1, 50.0)
    fake_run(root, "flm_vp", "dtd", "resnet18", 2, 51.0)
    fake_run(root, "flm_vp", "dtd", "resnet18", 3, 52.0)
    return root


def test_mean_std_missing_and_paper_values(results):
    cells = mt.build_cells(mt.collect_runs(results), None, [1, 2, 3])
    ilm = cells[("flowers102", "resnet18", "ilm_vp")]
    assert ilm.mean == pytest.approx(20.0) and ilm.std == pytest.approx(10.0) and ilm.complete
    assert ilm.paper == (27.9, 0.7) and ilm.protocol == "best"
    flm = cells[("flowers102", "resnet18", "flm_vp")]
    assert flm.n == 2 and flm.mean == pytest.approx(13.0) and flm.missing_seeds == [3]
    text = mt.markdown(cells)
    assert "| flowers102 | **20.0 ± 10.0** (3) / 27.9 | 13.0 ± 1.4 (2/3)! / 20.0 |" in text
    assert "| dtd | 41.0 ± 1.4 (2/3)! / 35.3 | **51.0 ± 1.0** (3) / 32.4 |" in text
    assert "flm_vp / flowers102 / resnet18: seed 3 incomplete, 2/5 epochs" in text
    assert "ilm_vp / dtd / resnet18: no run for seed 3" in text
    assert "Missing or incomplete runs: 2" in text


def test_csv_matches_cells(results):
    cells = mt.build_cells(mt.collect_runs(results), None, [1, 2, 3])
    rows = {(r["dataset"], r["method"]): r for r in csv.DictReader(io.StringIO(mt.to_csv(cells)))}
    assert float(rows[("flowers102", "ilm_vp")]["mean"]) == pytest.approx(20.0)
    assert rows[("flowers102", "flm_vp")]["missing_seeds"] == "3" and rows[("flowers102", "flm_vp")]["n"] == "2"
    assert rows[("dtd", "flm_vp")]["paper_mean"] == "32.4" and rows[("dtd", "flm_vp")]["protocol"] == "best_epoch_on_test"


def test_default_seeds_are_every_seed_seen(tmp_path):
    fake_run(tmp_path, "ilm_vp", "cifar10", "resnet18", 1, 60.0)
    fake_run(tmp_path, "ilm_vp", "cifar10", "resnet18", 4, 62.0)
    fake_run(tmp_path, "flm_vp", "cifar10", "resnet18", 1, 61.0)
    cells = mt.build_cells(mt.collect_runs(tmp_path), None, None)
    assert cells[("cifar10", "resnet18", "flm_vp")].missing_seeds == [4]
    assert cells[("cifar10", "resnet18", "ilm_vp")].std is not None


def test_validation_protocol_and_final_protocol(tmp_path):
    for seed in (1, 2):
        fake_run(tmp_path, "ilm_vp", "gtsrb", "resnet18", seed, 70.0 + seed, val_acc=60.0 + seed)
    fake_run(tmp_path, "flm_vp", "gtsrb", "resnet18", 1, 80.0)
    fake_run(tmp_path, "flm_vp", "gtsrb", "resnet18", 2, 82.0)
    cells = mt.build_cells(mt.collect_runs(tmp_path), None, [1, 2])
    assert cells[("gtsrb", "resnet18", "ilm_vp")].protocol == "val"
    assert cells[("gtsrb", "resnet18", "ilm_vp")].mean == pytest.approx(61.5)
    assert cells[("gtsrb", "resnet18", "flm_vp")].protocol == "best"
    text = mt.markdown(cells)
    assert "61.5 ± 0.7† (2)" in text and "validation split" in text
    final = mt.build_cells(mt.collect_runs(tmp_path), None, [1, 2], protocol="final")
    assert final[("gtsrb", "resnet18", "flm_vp")].mean == pytest.approx(80.0)


def test_several_settings_in_one_cell_are_reported_and_selectable(tmp_path):
    for seed in (1, 2):
        fake_run(tmp_path, "ilm_vp", "svhn", "resnet18", seed, 50.0, epochs=5)
    fake_run(tmp_path, "ilm_vp", "svhn", "resnet18", 1, 90.0, epochs=10)
    runs = mt.collect_runs(tmp_path)
    cell = mt.build_cells(runs, None, [1, 2])[("svhn", "resnet18", "ilm_vp")]
    assert cell.mean == pytest.approx(50.0) and cell.other_settings == 1
    assert any("other setting" in line for line in mt.missing_report({("svhn", "resnet18", "ilm_vp"): cell}))
    picked = [r for r in runs if mt.matches(r, mt.parse_where(["epochs=10"]))]
    cell = mt.build_cells(picked, None, [1])[("svhn", "resnet18", "ilm_vp")]
    assert cell.mean == pytest.approx(90.0) and cell.other_settings == 0


def test_micro_batch_separates_settings_only_where_it_changes_the_result(tmp_path):
    for method in ("ilm_vp", "full_finetune"):
        fake_run(tmp_path, method, "svhn", "resnet18", 1, 50.0)
        fake_run(tmp_path, method, "svhn", "resnet18", 2, 52.0, micro_batch=16)
    cells = mt.build_cells(mt.collect_runs(tmp_path), None, [1, 2])
    assert cells[("svhn", "resnet18", "ilm_vp")].n == 2  # exact for a frozen network: one setting
    assert cells[("svhn", "resnet18", "full_finetune")].other_settings == 1  # batch norms see chunks: two


def test_spellings_of_one_augmentation_are_one_setting(tmp_path):
    """--augment crop_flip (the watermark's old spelling) and resize4_crop are one recipe; none is another."""
    fake_run(tmp_path, "ilm_vp", "svhn", "resnet18", 1, 50.0, prompt="watermark", extra={"augment": "crop_flip"})
    fake_run(tmp_path, "ilm_vp", "svhn", "resnet18", 2, 52.0, prompt="watermark", extra={"augment": "resize4_crop"})
    fake_run(tmp_path, "ilm_vp", "svhn", "resnet18", 3, 54.0, prompt="watermark", extra={"augment": "none"})
    cells = mt.build_cells(mt.collect_runs(tmp_path), None, [1, 2])
    cell = cells[("svhn", "resnet18", "ilm_vp")]
    assert cell.n == 2 and cell.other_settings == 1


def test_preset_lists_cells_without_any_run(results):
    expected = mt.expected_cells("table1-resnet18", datasets=["flowers102"])
    assert len(expected) == 5
    cells = mt.build_cells(mt.collect_runs(results), expected, [1, 2, 3])
    assert set(cells) == set(expected)
    report = "\n".join(mt.missing_report(cells))
    assert "linear_probing / flowers102 / resnet18: no run for seeds 1, 2, 3" in report
    assert "| – / 88.0 |" in mt.markdown(cells)
    assert len(mt.expected_cells("table1")) == 13 * 13


def test_clip_table_and_compare_network(tmp_path):
    fake_run(tmp_path, "ilm_tp_vp", "flowers102", "ViT-B-32", 1, 80.0)
    fake_run(tmp_path, "single_tp_vp", "flowers102", "ViT-B-32", 1, 70.0)
    cells = mt.build_cells(mt.collect_runs(tmp_path), None, [1], clip=True)
    assert cells[("flowers102", "clip", "ilm_tp_vp")].paper == (83.7, None)
    assert "| flowers102 | **80.0** (1) / 83.7 | 70.0 (1) / 70.0 |" in mt.markdown(cells)
    fake_run(tmp_path, "ilm_vp", "cifar10", "efficientnet_lite0", 1, 50.0)
    cells = mt.build_cells(mt.collect_runs(tmp_path), None, [1], compare={"efficientnet_lite0": "resnet18"})
    assert cells[("cifar10", "efficientnet_lite0", "ilm_vp")].paper == (65.5, 0.1)


def test_cli_writes_markdown_and_csv(results, tmp_path, capsys):
    out = tmp_path / "docs" / "table"
    assert mt.main([str(results), "--seeds", "1", "2", "3", "--out", str(out), "--title", "T"]) == 0
    printed = capsys.readouterr().out
    assert out.with_suffix(".md").read_text() == printed and printed.startswith("### T")
    assert out.with_suffix(".csv").read_text().startswith("dataset,network,method")
    assert mt.main([str(tmp_path / "nowhere")]) == 2
    assert mt.main([str(results), "--where", "epochs=99"]) == 2


def test_random_weight_runs_are_marked(tmp_path, capsys):
    root = tmp_path / "res"
    for seed in (1, 2):
        fake_run(root, "ilm_tp_vp", "cifar10", "ViT-B/32", seed, 40.0 + seed, extra={"clip_pretrained": "none"})
        fake_run(root, "single_tp_vp", "cifar10", "ViT-B/32", seed, 30.0 + seed, extra={"clip_pretrained": "openai"})
    assert mt.main([str(root), "--clip", "--output", str(tmp_path / "t")]) == 0
    text = (tmp_path / "t.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| cifar10"))
    random_cell, real_cell = row.split(" | ")[1:3]
    assert "‡" in random_cell and "‡" not in real_cell
    assert "**" not in random_cell and real_cell.startswith("**")  # higher, but not in the race
    assert mt.RANDOM_NOTE in text and "ViT-B/32's" in text
    rows = list(csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text())))
    assert {r["method"]: r["random_weights"] for r in rows} == {"ilm_tp_vp": "1", "single_tp_vp": "0"}
def finish(planned, best: float, val: float, seconds: float, **extra) -> None:
    """Write what a finished run of ``planned`` leaves behind."""
    from tools import sweep as rp

    planned.run_dir.mkdir(parents=True)
    (planned.run_dir / "ckpt.pth").write_bytes(b"x")
    epochs = rp.method_config(planned.job.method, planned.command[2:]).epochs
    results = {"epochs": epochs, "best_test_acc": best, "val_selected_test_acc": val, "mean_epoch_seconds": seconds, **extra}
    (planned.run_dir / "results.json").write_text(json.dumps(results))


def test_comparison_table_has_a_row_per_configuration_and_both_protocols(tmp_path, capsys):
    from tools import sweep as rp

    jobs = rp.expand_variants(rp.PRESETS["beyond"], datasets=["dtd10"], labels=["pad+ilm", "smm+ilm", "linear_probing"])
    planned = {(p.job.variant, p.job.seed): p for p in rp.plan(jobs, tmp_path)}
    for seed, (pad, smm, lp) in zip((1, 2, 3), ((30.0, 40.0, 60.0), (32.0, 44.0, 62.0), (34.0, None, 64.0))):
        finish(planned[("pad+ilm", seed)], pad, pad - 1, 10.0, prompt_params=150528, mapping_params=0)
        finish(planned[("linear_probing", seed)], lp, lp - 2, 1.0, trainable_params=12810)
        if smm is not None:
            finish(planned[("smm+ilm", seed)], smm, smm - 3, 12.0 + seed, prompt_params=177027, mask_params=26499, mapping_params=0)
    cells = mt.variant_cells("beyond", tmp_path, datasets=["dtd10"], variants=["pad+ilm", "smm+ilm", "linear_probing"])
    assert mt.mean_std(cells[("pad+ilm", "dtd10")].best) == (pytest.approx(32.0), pytest.approx(2.0))
    assert cells[("smm+ilm", "dtd10")].val == {1: 37.0, 2: 41.0} and cells[("smm+ilm", "dtd10")].params == 177027
    text = mt.variant_markdown("beyond", cells)
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert rows["| pad+ilm"] == "| pad+ilm | 150,528 | 32.0 ± 2.0 | 31.0 ± 2.0 | 10.0 ± 0.0 |"
    assert rows["| smm+ilm"] == "| smm+ilm | 177,027 | **42.0 ± 2.8** (2/3)! | **39.0 ± 2.8** (2/3)! | 13.5 ± 0.7 (2/3)! |"
    assert rows["| *linear_probing* (reference)"].startswith("| *linear_probing* (reference) | 12,810 (head) | 62.0 ± 2.0 | 60.0 ± 2.0 |")
    assert "Missing or unfinished runs: 1" in text and "smm+ilm / dtd10: seed 3 new" in text
    assert "python experiments/cnn/smm_vp.py --dataset folder" in text
    out = tmp_path / "table"
    assert mt.main([str(tmp_path), "--preset", "beyond", "--datasets", "dtd10", "--variants", "pad+ilm", "--output", str(out)]) == 0
    assert out.with_suffix(".csv").read_text().splitlines()[1].startswith("pad+ilm,dtd10,150528,0,3,3,32.0000,2.0000,31.0000")
    capsys.readouterr()
