"""The eight CoOp-split datasets read from fixtures in CoOp's real layout."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_NETWORK
from dataset_fixtures import COOP_FIXTURE_CLASSES, coop_spec, write_coop_dataset

from common.errors import UserError
from data.image_io import read_image
from data.registry import SubsetSpec, load_dataset
from runner.cli import main

COOP_NAMES = ["flowers102", "dtd", "ucf101", "food101", "eurosat", "oxfordpets", "stanfordcars", "sun397"]


@pytest.mark.parametrize("name", COOP_NAMES)
def test_loader_reads_coop_layout(name, tmp_path):
    split_file = write_coop_dataset(tmp_path, name)
    data = load_dataset(name, tmp_path)
    assert data.sizes() == {"train": 12, "val": 6, "test": 6}
    classes = COOP_FIXTURE_CLASSES[name][0]
    assert data.class_names == [c.replace("_", " ") for c in classes]
    assert data.image_size == (128, 128) and data.train.images.shape == (12, 3, 128, 128)
    assert data.batch_size == (64 if name in ("dtd", "oxfordpets") else 128)
    content = json.loads(split_file.read_text())
    spec = coop_spec(name)
    image_root = tmp_path / spec.folder / spec.image_dir
    for split in ("train", "val", "test"):
        assert getattr(data, split).labels.tolist() == [label for _, label, _ in content[split]]
    # pixels: the listed file, resized to 128x128
    rel, _, _ = content["test"][3]
    expected = torch.from_numpy(read_image(image_root / rel, (128, 128)).transpose(2, 0, 1).copy())
    assert torch.equal(data.test.images[3], expected)


def test_image_size_flag_and_subsets(tmp_path):
    write_coop_dataset(tmp_path, "eurosat")
    data = load_dataset("eurosat", tmp_path, image_size=32, subset=SubsetSpec(max_train=6, max_test=3))
    assert data.image_size == (32, 32)
    assert data.sizes() == {"train": 6, "val": 3, "test": 3}
    assert torch.bincount(data.train.labels).tolist() == [2, 2, 2]


def test_val_fraction_keeps_coop_val_and_zero_drops_it(tmp_path):
    write_coop_dataset(tmp_path, "dtd")
    assert load_dataset("dtd", tmp_path, subset=SubsetSpec(val_fraction=0.5)).sizes() == {"train": 12, "val": 6, "test": 6}
    assert load_dataset("dtd", tmp_path, subset=SubsetSpec(val_fraction=0)).sizes() == {"train": 12, "val": 0, "test": 6}


def test_missing_dataset_names_files_and_sources(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset("food101", tmp_path)
    msg = str(err.value)
    assert "food-101/images" in msg and "split_zhou_Food101.json" in msg and str(tmp_path) in msg
    assert "data.vision.ee.ethz.ch" in msg and "CoOp" in msg


def test_missing_split_file_only(tmp_path):
    split_file = write_coop_dataset(tmp_path, "oxfordpets")
    split_file.unlink()
    with pytest.raises(UserError, match="split_zhou_OxfordPets.json"):
        load_dataset("oxfordpets", tmp_path)


def test_split_file_naming_missing_image(tmp_path):
    split_file = write_coop_dataset(tmp_path, "flowers102")
    content = json.loads(split_file.read_text())
    content["val"][1][0] = "image_99999.jpg"
    split_file.write_text(json.dumps(content))
    with pytest.raises(UserError) as err:
        load_dataset("flowers102", tmp_path)
    assert "image_99999.jpg" in str(err.value) and str(split_file) in str(err.value)


def test_unreadable_image_is_named(tmp_path):
    split_file = write_coop_dataset(tmp_path, "sun397")
    rel = json.loads(split_file.read_text())["train"][5][0]
    bad = tmp_path / "sun397" / "SUN397" / rel
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match="cannot read image .*" + Path(rel).name):
        load_dataset("sun397", tmp_path)


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda c: c["train"][0].__setitem__(1, 5), "outside"),  # label 5 with 3 class names
        (lambda c: c["test"][0].__setitem__(1, -1), "negative label"),
        (lambda c: c["val"][0].__setitem__(2, "striped"), "named both"),
        (lambda c: c["train"][0].__setitem__(1, "0"), "integer label"),
        (lambda c: c.pop("val"), "'train', 'val' and 'test'"),
    ],
)
def test_bad_labels_in_split_file(tmp_path, edit, pattern):
    split_file = write_coop_dataset(tmp_path, "dtd")
    content = json.loads(split_file.read_text())
    edit(content)
    split_file.write_text(json.dumps(content))
    with pytest.raises(UserError, match=pattern) as err:
        load_dataset("dtd", tmp_path)
    assert str(split_file) in str(err.value)


def test_cli_reports_missing_dataset(tmp_path, capsys):
    args = ["--network", TINY_NETWORK, "--dataset", "ucf101", "--data-path", str(tmp_path), "--results-path", str(tmp_path / "res"), "--device", "cpu"]
    assert main("ilm_vp", args) == 2
    assert "UCF-101-midframes" in capsys.readouterr().err


@pytest.mark.slow
def test_ilm_vp_end_to_end_on_coop_fixture(tmp_path):
    write_coop_dataset(tmp_path / "data", "dtd")
    args = [
        "--network", TINY_NETWORK, "--dataset", "dtd", "--data-path", str(tmp_path / "data"),
        "--results-path", str(tmp_path / "res"), "--image-size", "32", "--epochs", "2", "--device", "cpu",
    ]  # fmt: skip
    assert main("ilm_vp", args) == 0
    (results_file,) = (tmp_path / "res").rglob("results.json")
    results = json.loads(results_file.read_text())
    rows = [json.loads(line) for line in (results_file.parent / "metrics.jsonl").read_text().splitlines()]
    assert results["data_sizes"] == {"train": 12, "val": 6, "test": 6}
    assert all(r["val_acc"] is not None for r in rows)
    chosen = max(rows, key=lambda r: (r["val_acc"], -r["epoch"]))
    assert results["val_selected_epoch"] == chosen["epoch"] and results["val_selected_test_acc"] == chosen["test_acc"]
    assert results["best_test_acc"] == max(r["test_acc"] for r in rows)
    assert results["final_test_acc"] == rows[-1]["test_acc"] and "best_test_acc" in results["protocol"]
    config = json.loads((results_file.parent / "config.json").read_text())
    assert config["resolved"]["batch_size"] == 64
