"""The paper's other five datasets, read from torchvision's on-disk layouts."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from common.errors import UserError
from data.registry import SubsetSpec, load_dataset


def test_cifar10_pickles(cifar_root):
    data = load_dataset("cifar10", cifar_root)
    assert data.sizes() == {"train": 50, "val": 0, "test": 20} and data.num_classes == 10
    assert load_dataset("cifar10", cifar_root, subset=SubsetSpec(val_fraction=0.2)).sizes()["val"] > 0


def test_cifar100_pickles(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 30), ("test", 10)):
        batch = {b"fine_labels": [int(i % 100) for i in range(n)], b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [f"class_{i}".encode() for i in range(100)]}, fh)
    data = load_dataset("cifar100", tmp_path)
    assert data.sizes() == {"train": 30, "val": 0, "test": 10}
    assert data.class_names[3] == "class 3" and data.train.labels[:3].tolist() == [0, 1, 2]


def test_svhn_mat(tmp_path):
    from scipy.io import savemat

    folder = tmp_path / "svhn"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train_32x32.mat", 12), ("test_32x32.mat", 6)):
        labels = (np.arange(n) % 10 + 1).reshape(-1, 1)  # 1..10, 10 = digit 0
        savemat(folder / name, {"X": rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8), "y": labels})
    data = load_dataset("svhn", tmp_path)
    assert data.sizes() == {"train": 12, "val": 0, "test": 6}
    assert data.train.labels[:10].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]


def test_gtsrb_layout(tmp_path):
    base = tmp_path / "gtsrb"
    rng = np.random.default_rng(0)
    for cls in (0, 14):
        folder = base / "GTSRB" / "Training" / f"{cls:05d}"
        folder.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, size=(30, 31, 3), dtype=np.uint8)).save(folder / f"00000_{i:05d}.ppm")
    test_dir = base / "GTSRB" / "Final_Test" / "Images"
    test_dir.mkdir(parents=True)
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i, cls in enumerate((14, 0)):
        Image.fromarray(rng.integers(0, 256, size=(33, 35, 3), dtype=np.uint8)).save(test_dir / f"{i:05d}.ppm")
        rows.append(f"{i:05d}.ppm;35;33;5;5;30;28;{cls}")
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset("gtsrb", tmp_path)
    assert data.sizes() == {"train": 6, "val": 0, "test": 2} and data.image_size == (32, 32)
    assert data.test.labels.tolist() == [14, 0] and data.class_names[14] == "stop"
    assert data.class_names[0] == "speed limit 20" and data.text_names[0] == "20_speed"
    assert len(load_dataset("gtsrb", tmp_path, subset=SubsetSpec(train_fraction=0.34)).train) == 2


@pytest.mark.parametrize("name", ["cifar100", "svhn", "gtsrb"])
def test_missing_torchvision_datasets(tmp_path, name):
    with pytest.raises(UserError, match="not found"):
        load_dataset(name, tmp_path)


def test_gtsrb_text_names_follow_the_official_label_map():
    """43 names by class id; the descriptive names stay the dataset's class names."""
    from data.gtsrb import GTSRB_CLASSES, GTSRB_LABEL_MAP
    from models.clip.text import clip_class_name

    assert len(GTSRB_LABEL_MAP) == len(GTSRB_CLASSES) == 43 == len(set(GTSRB_LABEL_MAP))
    assert [clip_class_name(n) for n in GTSRB_LABEL_MAP[:2]] == ["20 speed", "30 speed"]
    assert GTSRB_LABEL_MAP[14] == "stop" and GTSRB_CLASSES[14] == "stop"
    assert (GTSRB_LABEL_MAP[6], GTSRB_CLASSES[6]) == ("80_lifted", "end of speed limit 80")
    assert (GTSRB_LABEL_MAP[42], GTSRB_CLASSES[42]) == ("lifted_no_overtaking_trucks", "end of no passing by vehicles over 3.5 tons")
