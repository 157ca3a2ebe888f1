"""``--dataset dtd10``: the comparison's DTD-10 label is a dataset of the method scripts too, and
computes what the image-folder spelling of tools/reproduce.py's ``beyond`` preset computes."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_NETWORK, write_image_folder

from data.registry import DATASETS, SubsetSpec, load_dataset
from runner.cli import main

CLASSES = ["banded", "blotchy", "braided"]


def run_flags(results: Path, *data: str) -> list[str]:
    return [
        "--network", TINY_NETWORK, *data, "--results-path", str(results), "--prompt", "watermark",
        "--epochs", "1", "--batch-size", "8", "--scheduler", "constant", "--device", "cpu", "--quiet",
    ]  # fmt: skip


def last_checkpoint(results: Path) -> dict:
    (path,) = results.rglob("ckpt.pth")
    return torch.load(path, weights_only=False)


@pytest.mark.slow
def test_dtd10_runs_and_computes_what_the_folder_spelling_computes(tmp_path):
    data = tmp_path / "data"
    write_image_folder(data / "dtd10", CLASSES, {"train": 6, "test": 3}, size=40, ext=".jpg")
    assert main("ilm_vp", run_flags(tmp_path / "named", "--dataset", "dtd10", "--data-path", str(data))) == 0
    old = ("--dataset", "folder", "--data-path", str(data / "dtd10"), "--image-size", "128")  # tools/reproduce.py's spelling
    assert main("ilm_vp", run_flags(tmp_path / "folder", *old)) == 0
    named, folder = last_checkpoint(tmp_path / "named"), last_checkpoint(tmp_path / "folder")
    assert named["model"].keys() == folder["model"].keys()
    assert all(torch.equal(named["model"][k], folder["model"][k]) for k in named["model"])
    assert [r["train_loss"] for r in named["history"]] == [r["train_loss"] for r in folder["history"]]
    assert [r["test_acc"] for r in named["history"]] == [r["test_acc"] for r in folder["history"]]
    # the run folders are named by the dataset: <method>/dtd10/... beside <method>/folder/...
    assert next((tmp_path / "named").rglob("ckpt.pth")).relative_to(tmp_path / "named").parts[1] == "dtd10"


def test_dtd10_is_listed_and_a_missing_folder_names_where_it_looked(tmp_path, capsys):
    assert "dtd10" in DATASETS.names()
    assert main("ilm_vp", run_flags(tmp_path / "r", "--dataset", "dtd10", "--data-path", str(tmp_path))) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'dtd10'}" in err and "docs/datasets.md" in err


@pytest.mark.realdata
def test_the_real_dtd10_reads_as_its_folder(shared_root):
    root = shared_root / "datasets"
    if not (root / "dtd10" / "train").is_dir():
        pytest.skip(f"no DTD-10 under {root}")
    subset = SubsetSpec(max_train=20, max_test=10)
    named = load_dataset("dtd10", root, subset=subset)
    folder = load_dataset("folder", root / "dtd10", image_size=128, subset=subset)
    assert named.class_names == folder.class_names and len(named.class_names) == 10
    assert named.image_size == (128, 128) and named.batch_size == folder.batch_size
    assert torch.equal(named.train.images, folder.train.images) and torch.equal(named.test.labels, folder.test.labels)
