"""Validation and data-fraction splits: stratified, seeded, disjoint; val-selected accuracy."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_args

from algorithms.engine import val_selection
from common.errors import UserError
from data.registry import DataRequest, DatasetSplits, SubsetSpec, load_dataset, register_dataset
from data.splits import stratified_split
from data.tensors import ImageTensorSet
from runner.cli import main

# class c has 10 * (c + 1) training samples: 10, 20, 30
TRAIN_LABELS = torch.cat([torch.full((10 * (c + 1),), c) for c in range(3)])


def indexed_set(labels: torch.Tensor, offset: int = 0) -> ImageTensorSet:
    """Images whose first two pixels encode the sample's index, so subsets can be traced back."""
    n = len(labels)
    images = torch.zeros(n, 3, 4, 4, dtype=torch.uint8)
    ids = torch.arange(n) + offset
    images[:, 0, 0, 0], images[:, 0, 0, 1] = (ids % 256).to(torch.uint8), (ids // 256).to(torch.uint8)
    return ImageTensorSet(images, labels)


def ids_of(data: ImageTensorSet) -> set[int]:
    return set((data.images[:, 0, 0, 0].long() + 256 * data.images[:, 0, 0, 1].long()).tolist())


@register_dataset("indexed_test_set", image_size=4, batch_size=8)
def _indexed(request: DataRequest) -> DatasetSplits:
    return DatasetSplits(train=indexed_set(TRAIN_LABELS), test=indexed_set(torch.arange(9) % 3, offset=1000), class_names=["a", "b", "c"])


def test_stratified_split_counts_and_coverage():
    kept, held = stratified_split(TRAIN_LABELS, 0.25, seed=0)
    assert torch.bincount(TRAIN_LABELS[held]).tolist() == [2, 5, 8]  # round(2.5)=2, 5, round(7.5)=8
    assert sorted(kept.tolist() + held.tolist()) == list(range(60))
    assert not set(kept.tolist()) & set(held.tolist())
    assert torch.equal(held, torch.sort(held).values)


def test_stratified_split_seeded():
    a, b, c = (stratified_split(TRAIN_LABELS, 0.3, seed=s)[1] for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_stratified_split_small_classes():
    labels = torch.tensor([0, 1, 1, 2, 2, 2])
    kept, held = stratified_split(labels, 0.01, seed=0)
    assert labels[held].tolist() == [1, 2]  # at least one of each class with 2+ samples; singletons stay
    kept, held = stratified_split(labels, 0.99, seed=0)
    assert sorted(labels[kept].tolist()) == [0, 1, 2]  # at least one of each class stays
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(UserError):
            stratified_split(labels, bad, seed=0)


def test_val_fraction_carves_val_from_train(tmp_path):
    data = load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(val_fraction=0.2))
    assert data.sizes() == {"train": 48, "val": 12, "test": 9}
    assert torch.bincount(data.val.labels).tolist() == [2, 4, 6]
    assert not ids_of(data.train) & ids_of(data.val) and len(ids_of(data.train) | ids_of(data.val)) == 60
    again = load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(val_fraction=0.2))
    other = load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(val_fraction=0.2, seed=3))
    assert ids_of(again.val) == ids_of(data.val) and ids_of(other.val) != ids_of(data.val)
    # no val split by default for a dataset without one
    assert load_dataset("indexed_test_set", tmp_path).val is None


def test_train_fraction_applies_to_train_after_val(tmp_path):
    full = load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(val_fraction=0.2))
    part = load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(val_fraction=0.2, train_fraction=0.5))
    assert ids_of(part.val) == ids_of(full.val)  # the val split does not depend on the fraction
    assert ids_of(part.train) < ids_of(full.train)
    assert torch.bincount(part.train.labels).tolist() == [4, 8, 12]  # half of 8, 16, 24
    assert len(part.test) == 9  # test untouched
    again = load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(val_fraction=0.2, train_fraction=0.5))
    other = load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(val_fraction=0.2, train_fraction=0.5, seed=9))
    assert ids_of(again.train) == ids_of(part.train) and ids_of(other.train) != ids_of(part.train)


def test_train_fraction_without_val(tmp_path):
    data = load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(train_fraction=0.1))
    assert torch.bincount(data.train.labels).tolist() == [1, 2, 3] and len(data.test) == 9
    with pytest.raises(UserError, match="fraction"):
        load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(train_fraction=1.5))


def test_train_fraction_is_taken_of_the_capped_training_set_and_nested(tmp_path):
    capped = load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(max_train=30))
    half = load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(max_train=30, train_fraction=0.5))
    quarter = load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(max_train=30, train_fraction=0.25))
    assert torch.bincount(capped.train.labels).tolist() == [10, 10, 10]
    assert torch.bincount(half.train.labels).tolist() == [5, 5, 5]  # half of the capped set, not of all 60
    assert ids_of(quarter.train) < ids_of(half.train) < ids_of(capped.train)  # nested fractions


def test_val_selection_ties_pick_earliest():
    history = [
        {"epoch": 1, "val_acc": 50.0, "test_acc": 40.0},
        {"epoch": 2, "val_acc": 70.0, "test_acc": 45.0},
        {"epoch": 3, "val_acc": 70.0, "test_acc": 60.0},
        {"epoch": 4, "val_acc": 65.0, "test_acc": 62.0},
    ]
    assert val_selection(history) == {"val_selected_test_acc": 45.0, "val_selected_epoch": 2, "best_val_acc": 70.0}
    assert val_selection([{"epoch": 1, "val_acc": None, "test_acc": 3.0}]) == {}


@pytest.mark.slow
def test_run_with_val_fraction_reports_all_protocols(tmp_path, cifar_root):
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--val-fraction", "0.2", "--epochs", "3")) == 0
    (results_file,) = (tmp_path / "res").rglob("results.json")
    results = json.loads(results_file.read_text())
    rows = [json.loads(line) for line in (results_file.parent / "metrics.jsonl").read_text().splitlines()]
    assert results["data_sizes"]["val"] > 0 and results["data_sizes"]["train"] + results["data_sizes"]["val"] == 50
    assert results["best_test_acc"] == max(r["test_acc"] for r in rows)
    assert results["final_test_acc"] == rows[-1]["test_acc"]
    selection = val_selection(rows)  # the accuracy, epoch, best validation accuracy, and the top-5 and loss of that epoch
    assert {"val_selected_test_acc", "val_selected_epoch", "best_val_acc"} <= set(selection) and {k: results[k] for k in selection} == selection
    config = json.loads((results_file.parent / "config.json").read_text())
    assert config["config"]["val_fraction"] == 0.2


@pytest.mark.slow
def test_run_without_val_has_no_val_fields(tmp_path, cifar_root):
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--epochs", "1")) == 0
    (results_file,) = (tmp_path / "res").rglob("results.json")
    results = json.loads(results_file.read_text())
    assert "val_selected_test_acc" not in results and results["best_test_acc"] is not None


def test_shots_are_balanced_nested_across_k_and_seeded(tmp_path):
    sets = {k: load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(shots=k)) for k in (1, 4, 10)}
    for k, data in sets.items():
        assert torch.bincount(data.train.labels).tolist() == [k, k, k] and len(data.test) == 9
    assert ids_of(sets[1].train) < ids_of(sets[4].train) < ids_of(sets[10].train)  # a K-shot set is part of every larger one
    other = load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(shots=4, seed=1))
    assert ids_of(other.train) != ids_of(sets[4].train) and torch.bincount(other.train.labels).tolist() == [4, 4, 4]


def test_shots_with_validation_are_drawn_from_the_rest_and_validation_does_not_depend_on_k(tmp_path):
    few, more = (load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(shots=k, val_fraction=0.2)) for k in (2, 8))
    assert ids_of(few.val) == ids_of(more.val) and torch.bincount(few.val.labels).tolist() == [2, 4, 6]
    assert not ids_of(more.train) & ids_of(more.val) and ids_of(few.train) < ids_of(more.train)
    assert torch.bincount(more.train.labels).tolist() == [8, 8, 8]


def test_shots_errors(tmp_path):
    with pytest.raises(UserError, match=r"--shots 9: class 'a' has only 8 training images after the validation hold-out \(1 of 3 classes have fewer\)"):
        load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(shots=9, val_fraction=0.2))
    with pytest.raises(UserError, match="drop --max-train-samples"):
        load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(shots=2, max_train=10))
    with pytest.raises(UserError, match="--shots must be positive"):
        load_dataset("indexed_test_set", tmp_path, subset=SubsetSpec(shots=0))


@pytest.mark.slow
def test_shots_flag_end_to_end(tmp_path, cifar_root, capsys):
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--shots", "2", "--epochs", "1")) == 0
    (results_file,) = (tmp_path / "res").rglob("results.json")
    assert json.loads(results_file.read_text())["data_sizes"]["train"] == 20
    assert main("ilm_vp", tiny_args(tmp_path / "bad", cifar_root, "--shots", "50", "--epochs", "1")) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: --shots 50: class ")
