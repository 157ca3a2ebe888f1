"""ImageNet-R and ImageNet-Sketch read from fixtures in their released layouts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_args
from dataset_fixtures import IMAGENET_FIXTURE_COUNTS, IMAGENET_FIXTURE_NAMES, write_wnid_folders

from common.errors import UserError
from data.imagenet_variants import load_imagenet_r, load_imagenet_sketch
from data.registry import DataRequest, SubsetSpec, dataset_names, load_dataset
from runner.cli import main
from tools.sweep import CLIP_DATASETS

WNIDS = list(IMAGENET_FIXTURE_COUNTS)
LOADERS = {"imagenet-r": load_imagenet_r, "imagenet-sketch": load_imagenet_sketch}


def read_splits(name: str, root: Path):
    """The loader's file lists, before anything is decoded."""
    return LOADERS[name](DataRequest(name=name, root=root, image_size=16, download=False))


def test_clip_preset_datasets_are_registered():
    assert set(CLIP_DATASETS) <= set(dataset_names())


def test_imagenet_r_by_name(tmp_path):
    write_wnid_folders(tmp_path / "imagenet-r")
    data = load_dataset("imagenet-r", tmp_path)
    assert data.class_names == IMAGENET_FIXTURE_NAMES == ["goldfish", "great white shark", "hammerhead"]
    assert data.sizes() == {"train": 24, "val": 0, "test": 6}
    assert data.image_size == (128, 128) and data.batch_size == 128
    assert data.train.images.shape == (24, 3, 128, 128)
    # 20% of every class (5, 10, 15 images) held out for test
    assert torch.bincount(data.test.labels).tolist() == [1, 2, 3]
    assert torch.bincount(data.train.labels).tolist() == [4, 8, 12]


@pytest.mark.parametrize("folder", ["imagenet-sketch", "imagenet-sketch/sketch", "sketch"])
def test_imagenet_sketch_folders(tmp_path, folder):
    paths = write_wnid_folders(tmp_path / folder, suffix=".JPEG")
    splits = read_splits("imagenet-sketch", tmp_path)
    assert splits.class_names == IMAGENET_FIXTURE_NAMES
    assert set(splits.train.paths) | set(splits.test.paths) == set(paths)
    data = load_dataset("imagenet-sketch", tmp_path, image_size=16)
    assert data.sizes() == {"train": 24, "val": 0, "test": 6} and data.image_size == (16, 16)


def test_split_is_stratified_disjoint_complete_and_fixed(tmp_path):
    paths = write_wnid_folders(tmp_path / "imagenet-r")
    first, again = read_splits("imagenet-r", tmp_path), read_splits("imagenet-r", tmp_path)
    train, test = set(first.train.paths), set(first.test.paths)
    assert not train & test and train | test == set(paths)
    assert first.train.paths == again.train.paths and first.test.paths == again.test.paths
    for split in (first.train, first.test):  # labels follow the wnid folder
        assert split.labels.tolist() == [WNIDS.index(p.parent.name) for p in split.paths]
    for label, wnid in enumerate(WNIDS):
        assert int((first.test.labels == label).sum()) == round(0.2 * IMAGENET_FIXTURE_COUNTS[wnid])
    # the run's seed does not move the test set
    seeded = [load_dataset("imagenet-r", tmp_path, image_size=16, subset=SubsetSpec(seed=s)) for s in (0, 7)]
    assert torch.equal(seeded[0].test.images, seeded[1].test.images)


@pytest.mark.parametrize(
    "name, folder, split_file",
    [("imagenet-r", "imagenet-r", "split_imagenet_r.json"), ("imagenet-sketch", "sketch", "split_imagenet_sketch.json")],
)
def test_split_file_overrides_generated_split(tmp_path, name, folder, split_file):
    paths = write_wnid_folders(tmp_path / folder)
    content = {"train": [], "val": [], "test": []}
    for path in paths:  # image 0 of each class to test, 1 to val, the rest to train
        split = {"0": "test", "1": "val"}.get(path.stem, "train")
        label = WNIDS.index(path.parent.name)
        content[split].append([f"{path.parent.name}/{path.name}", label, IMAGENET_FIXTURE_NAMES[label].replace(" ", "_")])
    (tmp_path / folder / split_file).write_text(json.dumps(content))
    splits = read_splits(name, tmp_path)
    assert [p.stem for p in splits.test.paths] == ["0", "0", "0"] and splits.test.labels.tolist() == [0, 1, 2]
    data = load_dataset(name, tmp_path, image_size=16)
    assert data.sizes() == {"train": 24, "val": 3, "test": 3}
    assert data.class_names == IMAGENET_FIXTURE_NAMES


@pytest.mark.parametrize(
    "name, expected",
    [
        ("imagenet-r", ["imagenet-r/<wnid>/*.jpg", "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar"]),
        (
            "imagenet-sketch",
            ["imagenet-sketch/<wnid>/*.JPEG", "imagenet-sketch/sketch/<wnid>/*.JPEG", " sketch/<wnid>/*.JPEG",
             "https://github.com/HaohanWang/ImageNet-Sketch"],
        ),  # fmt: skip
    ],
)
def test_missing_data_names_layout_place_and_source(tmp_path, name, expected):
    (tmp_path / "imagenet-r" / "misc").mkdir(parents=True)  # folders without wnid folders count as missing
    (tmp_path / "imagenet-sketch").mkdir()
    with pytest.raises(UserError) as err:
        load_dataset(name, tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and f"dataset {name!r} not found" in msg and str(tmp_path) in msg
    assert all(part in msg for part in expected), msg


@pytest.mark.parametrize("stray", ["n99999999", "misc"])
def test_unknown_wnid_folder_is_named(tmp_path, stray):
    write_wnid_folders(tmp_path / "imagenet-r", {"n01443537": 2, stray: 2})
    with pytest.raises(UserError) as err:
        load_dataset("imagenet-r", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "imagenet-r" / stray) in msg and "not an ImageNet-1k wnid" in msg


@pytest.mark.slow
def test_ilm_vp_end_to_end_on_imagenet_r_fixture(tmp_path):
    write_wnid_folders(tmp_path / "data" / "imagenet-r")
    args = tiny_args(tmp_path / "res", tmp_path / "data", "--dataset", "imagenet-r", "--image-size", "32")
    assert main("ilm_vp", args) == 0
    (results_file,) = (tmp_path / "res").rglob("results.json")
    assert json.loads(results_file.read_text())["data_sizes"] == {"train": 24, "val": 0, "test": 6}
