"""ABIDE: CC200 vectors as upper-triangle images, phenotype labels, the fixed split and the mask."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from conftest import TinyNet
from dataset_fixtures import ROIS, abide_groups, write_abide

from common.errors import UserError
from data.abide import connectivity_image
from data.registry import SubsetSpec, load_dataset
from models.networks import SourceNetwork, register_network
from models.prompts import ExpansiveVisualPrompt, PromptSpec
from runner.cli import main

CANVAS_NET = "tiny_test_net_224"


@register_network(CANVAS_NET)
def _tiny_224(weights_path, download) -> SourceNetwork:
    """The tiny test network behind a 224 canvas, large enough for 200x200 ABIDE matrices."""
    torch.manual_seed(0)
    names = [f"source class {i}" for i in range(20)]
    return SourceNetwork(CANVAS_NET, TinyNet(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), names, input_size=224)


def reference_image(vector: np.ndarray) -> np.ndarray:
    """Slow reference: rebuild the symmetric matrix from its row-major strict lower triangle,
    min-max normalize the vector, keep the strict upper triangle."""
    v = vector.astype(np.float64)
    v = (v - v.min()) / (v.max() - v.min())
    full = np.zeros((ROIS, ROIS))
    k = 0
    for i in range(ROIS):
        for j in range(i):
            full[i, j] = full[j, i] = v[k]
            k += 1
    upper = np.triu(full, k=1)
    return np.round(upper * 255).astype(np.uint8)


def test_connectivity_image_matches_reference():
    vector = np.random.default_rng(3).normal(size=ROIS * (ROIS - 1) // 2)
    image = connectivity_image(vector)
    assert np.array_equal(image, reference_image(vector))
    assert image[0, 1] == round(255 * (vector[0] - vector.min()) / np.ptp(vector))  # corr[1, 0] -> [0, 1]
    assert np.all(np.tril(image) == 0)
    assert connectivity_image(np.full(19900, 0.3)).max() == 0  # constant vector: no division by zero


def test_abide_loader(tmp_path):
    groups = abide_groups(asd=10, control=12)
    vectors = write_abide(tmp_path, groups)
    data = load_dataset("abide", tmp_path)
    assert data.class_names == ["non ASD", "ASD"] and data.batch_size == 64 and data.image_size == (ROIS, ROIS)
    assert data.sizes() == {"train": 20, "val": 0, "test": 2}
    assert torch.bincount(data.test.labels).tolist() == [1, 1]  # stratified: 10% of each class
    # three identical channels; every image is one subject's reference image with its label
    images = torch.cat([data.train.images, data.test.images])
    labels = torch.cat([data.train.labels, data.test.labels])
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    expected = {s: (torch.from_numpy(reference_image(v)), 1 if groups[s] == 1 else 0) for s, v in vectors.items()}
    matched = []
    for image, label in zip(images[:, 0], labels.tolist()):
        (subject,) = [s for s, (ref, _) in expected.items() if torch.equal(ref, image)]
        assert expected[subject][1] == label
        matched.append(subject)
    assert sorted(matched) == sorted(groups)
    # the mask: diagonal and lower triangle writable
    mask = data.prompt_mask
    assert mask.shape == (ROIS, ROIS) and mask.dtype == torch.bool
    assert torch.equal(mask, torch.tril(torch.ones(ROIS, ROIS)).bool()) and mask.sum() == ROIS * (ROIS + 1) // 2


def test_abide_split_is_fixed_and_disjoint(tmp_path):
    write_abide(tmp_path, abide_groups(asd=15, control=25))
    a, b = load_dataset("abide", tmp_path), load_dataset("abide", tmp_path, subset=SubsetSpec(seed=5))
    assert torch.equal(a.test.images, b.test.images)  # the train/test split does not follow --subset-seed
    assert a.sizes() == {"train": 36, "val": 0, "test": 4}
    train_keys = {bytes(x.numpy()) for x in a.train.images[:, 0]}
    assert not any(bytes(x.numpy()) in train_keys for x in a.test.images[:, 0])
    c = load_dataset("abide", tmp_path, subset=SubsetSpec(val_fraction=0.2))
    # train holds 13 ASD and 23 controls; round(0.2 * 13) = 3 and round(0.2 * 23) = 5 go to val
    assert c.sizes() == {"train": 28, "val": 8, "test": 4}
    assert torch.bincount(c.val.labels).tolist() == [5, 3] and torch.equal(c.test.images, a.test.images)


def test_prompt_writes_only_where_the_mask_allows(tmp_path):
    write_abide(tmp_path, abide_groups(2, 2))
    data = load_dataset("abide", tmp_path)
    prompt = ExpansiveVisualPrompt(PromptSpec((ROIS, ROIS), (0.0,) * 3, (1.0,) * 3, out_size=224, image_mask=data.prompt_mask))
    x = data.train.images[:1].float() / 255
    out = prompt(x)[0]  # zero theta: +0.5 where writable, std 1 mean 0
    top, left = prompt.top, prompt.left
    inner = out[:, top : top + ROIS, left : left + ROIS]
    assert torch.allclose(inner - x[0], 0.5 * data.prompt_mask.float().expand(3, -1, -1))
    assert torch.all(inner[:, data.prompt_mask] == 0.5)  # the lower triangle held zeros


def test_abide_errors(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset("abide", tmp_path)
    assert "abide.hdf5" in str(err.value) and "Phenotypic_V1_0b_preprocessed1.csv" in str(err.value)
    assert "acerta-abide" in str(err.value) and "fcp-indi" in str(err.value)
    write_abide(tmp_path, abide_groups(3, 3))
    with pytest.raises(UserError, match="--image-size must be 200"):
        load_dataset("abide", tmp_path, image_size=128)


def _rewrite_csv(path, edit):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    edit(rows)
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda rows: rows.pop(1), "NYU_0050000 has no row"),
        (lambda rows: rows[2].__setitem__(5, "3"), "NYU_0050001 has DX_GROUP 3, outside"),
        (lambda rows: rows[2].__setitem__(5, "x"), "FILE_ID 'NYU_0050001' has DX_GROUP 'x'"),
    ],
)
def test_phenotype_errors(tmp_path, edit, pattern):
    write_abide(tmp_path, abide_groups(3, 3))
    _rewrite_csv(tmp_path / "abide" / "Phenotypic_V1_0b_preprocessed1.csv", edit)
    with pytest.raises(UserError, match=pattern):
        load_dataset("abide", tmp_path)


def test_bad_hdf5(tmp_path):
    write_abide(tmp_path, abide_groups(3, 3), vector_size=100)
    with pytest.raises(UserError, match="cc200 has 100 values"):
        load_dataset("abide", tmp_path)
    (tmp_path / "abide" / "abide.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(UserError, match="cannot read .*abide.hdf5"):
        load_dataset("abide", tmp_path)


@pytest.mark.slow
def test_ilm_vp_end_to_end_on_abide(tmp_path):
    write_abide(tmp_path / "data", abide_groups(6, 6))
    args = [
        "--network", CANVAS_NET, "--dataset", "abide", "--data-path", str(tmp_path / "data"),
        "--results-path", str(tmp_path / "res"), "--epochs", "2", "--device", "cpu", "--val-fraction", "0.2",
    ]  # fmt: skip
    assert main("ilm_vp", args) == 0
    (results_file,) = (tmp_path / "res").rglob("results.json")
    results = json.loads(results_file.read_text())
    assert results["data_sizes"] == {"train": 8, "val": 2, "test": 2}
    assert results["trainable_params"] == 3 * 224 * 224 and results["val_selected_epoch"] in (1, 2)
