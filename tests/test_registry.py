"""data/registry.py and the loaders behind it: names, formats (torchvision's on-disk layouts of CIFAR, SVHN, GTSRB; image folders), missing-data errors."""
from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest
import torch
from conftest import random_images, write_image_folder
from PIL import Image

from common.errors import UserError
from data import dataset_names, load_dataset
from data.image_io import readable_class_name
from data.registry import SubsetSpec


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
    assert load_dataset("cifar10", cifar_root, subset=SubsetSpec(val_fraction=0.2)).sizes()["val"] > 0


def test_cifar100_pickles_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    fine = {}
    for name, n in (("train", 30), ("test", 10)):
        fine[name] = [int(x) for x in rng.integers(0, 100, n)]
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"fine_labels": fine[name], b"coarse_labels": [0] * n}, fh)
    names = [f"class_{i}" for i in range(100)]
    names[3] = "maple_tree"
    with open(folder / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [n.encode() for n in names]}, fh)
    data = load_dataset("cifar100", tmp_path)
    assert data.sizes() == {"train": 30, "val": 0, "test": 10} and data.num_classes == 100 and data.class_names[3] == "maple tree"
    assert data.train.labels.tolist() == fine["train"] and data.test.labels.tolist() == fine["test"]  # the fine labels


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
    assert data.test.labels.tolist() == [0, 14, 0, 14] and data.sizes() == {"train": 6, "val": 0, "test": 4}
    assert data.class_names[0] == "speed limit 20" and data.text_names[0] == "20_speed"
    assert len(load_dataset("gtsrb", tmp_path, subset=SubsetSpec(train_fraction=0.34)).train) == 2


def test_gtsrb_text_names_follow_the_official_label_map():
    """43 names by class id; the descriptive names stay the dataset's class names."""
    from data.gtsrb import GTSRB_CLASSES, GTSRB_LABEL_MAP
    from models.clip.text import clip_class_name

    assert len(GTSRB_LABEL_MAP) == len(GTSRB_CLASSES) == 43 == len(set(GTSRB_LABEL_MAP))
    assert [clip_class_name(n) for n in GTSRB_LABEL_MAP[:2]] == ["20 speed", "30 speed"]
    assert GTSRB_LABEL_MAP[14] == "stop" and GTSRB_CLASSES[14] == "stop"
    assert (GTSRB_LABEL_MAP[6], GTSRB_CLASSES[6]) == ("80_lifted", "end of speed limit 80")
    assert (GTSRB_LABEL_MAP[42], GTSRB_CLASSES[42]) == ("lifted_no_overtaking_trucks", "end of no passing by vehicles over 3.5 tons")


@pytest.mark.parametrize(
    "name, expected",
    [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("svhn", "train_32x32.mat"), ("gtsrb", "GT-final_test.csv")],
)
def test_missing_data_names_files_folder_and_source(tmp_path, name, expected):
    with pytest.raises(UserError) as info:
        load_dataset(name, tmp_path)
    message = str(info.value)
    assert "not found" in message and expected in message and str(tmp_path) in message and "\n" not in message


def test_unreadable_image_names_the_file(folder_dataset):
    bad = folder_dataset / "train" / "tulip" / "0001.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(UserError, match="0001.png"):
        load_dataset("folder", folder_dataset)


def test_subset_spec_applies_before_decoding(cifar_root):
    data = load_dataset("cifar10", cifar_root, subset=SubsetSpec(max_train=20, max_test=10, seed=0))
    assert data.sizes() == {"train": 20, "val": 0, "test": 10}




def test_a_dataset_of_one_class_is_refused(tmp_path):
    one = write_image_folder(tmp_path / "one", ["cat"], {"train": 3, "test": 2}, size=8)
    with pytest.raises(UserError, match=r"has 1 class \(cat\); classification needs at least two"):
        load_dataset("folder", one, image_size=8)
    # two class folders, but one holds no images: refused as such, naming it (tests/test_folder.py)
    two = write_image_folder(tmp_path / "two", ["cat", "dog"], {"train": 3, "test": 2}, size=8)
    for image in (two / "train" / "dog").iterdir():
        image.unlink()
    (two / "train" / "dog" / "notes.txt").write_text("no images here")
    with pytest.raises(UserError, match=f"class folder {two / 'train' / 'dog'} holds no images"):
        load_dataset("folder", two, image_size=8)
