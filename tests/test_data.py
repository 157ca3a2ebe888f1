"""Loaders on fixtures in the real on-disk formats, subsets, batch loader."""
from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from algorithms.errors import UserError
from data import dataset_names, load_dataset
from data.image_io import readable_class_name
from data.loader import DEVICE_RESIDENT_BYTES, BatchLoader, fits_on_device, to_float01
from data.registry import SubsetSpec
from data.tensors import FeatureSet, ImageTensorSet, stratified_subset
from conftest import random_images, write_image_folder


def test_registry_lists_core_datasets_and_rejects_unknown(tmp_path):
    assert {"cifar10", "cifar100", "svhn", "gtsrb", "folder"} <= set(dataset_names())
    with pytest.raises(UserError, match="unknown dataset 'imagenet21k'; available: .*cifar10"):
        load_dataset("imagenet21k", tmp_path)


def test_cifar10_pickles(cifar_root):
    data = load_dataset("cifar10", cifar_root)
    assert data.sizes() == {"train": 50, "val": 0, "test": 20}
    assert data.class_names[:3] == ["airplane", "automobile", "bird"] and data.num_classes == 10
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape[1:] == (3, 32, 32)
    with open(cifar_root / "cifar-10-batches-py" / "data_batch_1", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    assert torch.equal(data.train.images[0], torch.from_numpy(raw[b"data"][0].reshape(3, 32, 32)))
    assert data.train.labels[:10].tolist() == raw[b"labels"]
    assert data.batch_size == 128


def test_cifar100_pickles_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 30), ("test", 10)):
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"fine_labels": list(rng.integers(0, 100, n)), b"coarse_labels": [0] * n}, fh)
    names = [f"class_{i}" for i in range(100)]
    names[3] = "maple_tree"
    with open(folder / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [n.encode() for n in names]}, fh)
    data = load_dataset("cifar100", tmp_path)
    assert data.sizes()["train"] == 30 and data.num_classes == 100 and data.class_names[3] == "maple tree"


def test_cifar10_image_folder_layout_is_preferred(tmp_path):
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    write_image_folder(tmp_path / "cifar10", classes, {"train": 3, "test": 2}, ext=".jpg")
    data = load_dataset("cifar10", tmp_path)
    assert data.sizes() == {"train": 30, "val": 0, "test": 20} and data.class_names == classes
    assert data.train.labels.tolist() == [c for c in range(10) for _ in range(3)]


def test_image_folder_decodes_resizes_and_names_classes(folder_dataset):
    data = load_dataset("folder", folder_dataset, image_size=24)
    assert data.class_names == ["rose red", "daisy white", "tulip"]  # folder order, as torchvision's ImageFolder
    assert data.image_size == (24, 24) and data.sizes() == {"train": 24, "val": 0, "test": 12}
    original = np.asarray(Image.open(folder_dataset / "train" / "Rose_Red" / "0000.png").resize((24, 24), Image.BILINEAR))
    assert torch.equal(data.train.images[0], torch.from_numpy(original.transpose(2, 0, 1).copy()))


def test_readable_class_names():
    assert readable_class_name("Golden_Retriever") == "golden retriever"
    assert readable_class_name("sea-lion") == "sea lion"


def test_svhn_mat_files_map_label_10_to_digit_0(tmp_path):
    from scipy.io import savemat

    folder = tmp_path / "svhn"
    folder.mkdir()
    for split, n in (("train", 12), ("test", 6)):
        images = random_images(n, 32, seed=n).transpose(1, 2, 3, 0)  # [H, W, C, N] as in the .mat files
        labels = (np.arange(n) % 10 + 1).reshape(-1, 1)  # 1..10, 10 meaning digit 0
        savemat(folder / f"{split}_32x32.mat", {"X": images, "y": labels})
    data = load_dataset("svhn", tmp_path)
    assert data.train.labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    assert torch.equal(data.train.images[0], torch.from_numpy(random_images(12, 32, seed=12)[0].transpose(2, 0, 1).copy()))
    assert data.class_names == [str(d) for d in range(10)]


def test_gtsrb_torchvision_layout_resized_to_32(tmp_path):
    base = tmp_path / "gtsrb"
    for cls in (0, 14):
        folder = base / "GTSRB" / "Training" / f"{cls:05d}"
        folder.mkdir(parents=True)
        for i, img in enumerate(random_images(3, 45, seed=cls)):
            Image.fromarray(img).save(folder / f"00000_{i:05d}.ppm")
    test_dir = base / "GTSRB" / "Final_Test" / "Images"
    test_dir.mkdir(parents=True)
    with open(base / "GT-final_test.csv", "w", newline="") as fh:
        writer = csv.writer(fh, delimiter=";")
        writer.writerow(["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"])
        for i, img in enumerate(random_images(4, 50, seed=9)):
            Image.fromarray(img).save(test_dir / f"{i:05d}.ppm")
            writer.writerow([f"{i:05d}.ppm", 50, 50, 5, 5, 45, 45, 14 if i % 2 else 0])
    data = load_dataset("gtsrb", tmp_path)
    assert data.num_classes == 43 and data.class_names[14] == "stop"
    assert data.image_size == (32, 32) and data.train.labels.tolist() == [0, 0, 0, 14, 14, 14]
    assert data.test.labels.tolist() == [0, 14, 0, 14]


@pytest.mark.parametrize(
    "name, expected",
    [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("svhn", "train_32x32.mat"), ("gtsrb", "GT-final_test.csv")],
)
def test_missing_data_names_files_folder_and_source(tmp_path, name, expected):
    with pytest.raises(UserError) as info:
        load_dataset(name, tmp_path)
    message = str(info.value)
    assert expected in message and str(tmp_path) in message and "\n" not in message


def test_unreadable_image_names_the_file(folder_dataset):
    bad = folder_dataset / "train" / "tulip" / "0001.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(UserError, match="0001.png"):
        load_dataset("folder", folder_dataset)


def test_stratified_subset_is_balanced_seeded_and_sorted():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = stratified_subset(labels, count=30, seed=3)
    assert torch.bincount(labels[idx]).tolist() == [10, 10, 10]
    assert torch.equal(idx, stratified_subset(labels, count=30, seed=3)) and torch.equal(idx, idx.sort().values)
    assert not torch.equal(idx, stratified_subset(labels, count=30, seed=4))
    frac = stratified_subset(labels, fraction=0.5, seed=0)
    assert torch.bincount(labels[frac]).tolist() == [25, 15, 10]
    small = stratified_subset(torch.tensor([0] * 2 + [1] * 40), count=20, seed=0)
    assert torch.bincount(torch.tensor([0] * 2 + [1] * 40)[small]).tolist() == [2, 18]


def test_subset_spec_applies_before_decoding(cifar_root):
    data = load_dataset("cifar10", cifar_root, subset=SubsetSpec(max_train=20, max_test=10, seed=0))
    assert data.sizes() == {"train": 20, "val": 0, "test": 10}


def _set(n: int) -> ImageTensorSet:
    return ImageTensorSet(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous(), torch.arange(n) % 3)


def test_batch_loader_covers_each_sample_once_and_replays_by_epoch():
    loader = BatchLoader(_set(50), 16, torch.device("cpu"), shuffle=True, seed=1)
    loader.set_epoch(3)
    first = torch.cat([x[:, 0, 0, 0] for x, _ in loader])
    assert sorted(first.tolist()) == list(range(50)) and len(loader) == 4
    loader.set_epoch(3)
    assert torch.equal(first, torch.cat([x[:, 0, 0, 0] for x, _ in loader]))
    loader.set_epoch(4)
    assert not torch.equal(first, torch.cat([x[:, 0, 0, 0] for x, _ in loader]))
    for x, y in loader:
        assert torch.equal(y, x[:, 0, 0, 0].long() % 3)


def test_batch_loader_shards_across_ranks():
    data = _set(11)
    evals = [torch.cat([x[:, 0, 0, 0] for x, _ in BatchLoader(data, 4, torch.device("cpu"), shuffle=False, rank=r, world_size=2)]) for r in range(2)]
    assert sorted(torch.cat(evals).tolist()) == list(range(11))  # evaluation: exact, no padding
    trains = [BatchLoader(data, 4, torch.device("cpu"), shuffle=True, seed=0, rank=r, world_size=2) for r in range(2)]
    seen = [torch.cat([x[:, 0, 0, 0] for x, _ in t]) for t in trains]
    assert len(seen[0]) == len(seen[1]) == 6 and set(torch.cat(seen).tolist()) == set(range(11))


def test_streamed_loader_matches_resident():
    data = _set(40)
    resident = BatchLoader(data, 8, torch.device("cpu"), shuffle=True, seed=5, resident=True)
    streamed = BatchLoader(data, 8, torch.device("cpu"), shuffle=True, seed=5, resident=False)
    for (a, la), (b, lb) in zip(resident, streamed):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_feature_sets_batch_like_the_images_they_came_from():
    images = _set(40)
    features = FeatureSet(images.images.flatten(1).float() * 0.5, images.labels)
    for resident in (True, False):
        pairs = zip(
            BatchLoader(images, 8, torch.device("cpu"), shuffle=True, seed=5, resident=resident),
            BatchLoader(features, 8, torch.device("cpu"), shuffle=True, seed=5, resident=resident),
            strict=True,
        )
        for (x, y), (f, g) in pairs:
            assert torch.equal(x.flatten(1).float() * 0.5, f) and torch.equal(y, g)
            assert to_float01(f) is f  # precomputed inputs pass through


def test_residency_counts_bytes_and_can_be_forced():
    cuda = torch.device("cuda")
    assert fits_on_device(DEVICE_RESIDENT_BYTES, cuda) and not fits_on_device(DEVICE_RESIDENT_BYTES + 1, cuda)
    assert fits_on_device(10 * DEVICE_RESIDENT_BYTES, torch.device("cpu"))
    assert fits_on_device(10 * DEVICE_RESIDENT_BYTES, cuda, resident=True) and not fits_on_device(1, cuda, resident=False)


def test_to_float01():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    assert torch.allclose(to_float01(x), torch.tensor([0.0, 0.2, 1.0]))
