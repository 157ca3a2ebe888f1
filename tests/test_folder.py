"""Image-folder datasets (data/folder.py): a class folder without images and a class mismatch between
train and test are refused, naming the folders and classes."""
from __future__ import annotations

import shutil

import pytest
from conftest import tiny_args, write_image_folder

from common.errors import UserError
from data.folder import class_difference
from data.registry import load_dataset
from runner.cli import main


def test_a_class_folder_without_images_is_refused_naming_it(tmp_path, capsys):
    root = write_image_folder(tmp_path / "d", ["cat", "dog", "tench"], {"train": 3, "test": 2}, size=8)
    for split in ("train", "test"):
        zebra = root / split / "zebra"
        zebra.mkdir()
        (zebra / "README").write_text("to do")
    with pytest.raises(UserError, match=f"^class folder {root / 'train' / 'zebra'} holds no images"):
        load_dataset("folder", root, image_size=8)
    argv = tiny_args(tmp_path / "res", root, "--dataset", "folder", "--image-size", "8")
    assert main("ilm_vp", argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"class folder {root / 'train' / 'zebra'} holds no images" in err
    assert not (tmp_path / "res").exists()


def test_a_train_test_class_mismatch_names_the_classes_on_each_side(tmp_path):
    root = write_image_folder(tmp_path / "d", ["cat", "dog", "tench"], {"train": 3, "test": 2}, size=8)
    shutil.move(root / "test" / "tench", root / "test" / "zebra")
    with pytest.raises(UserError, match=r"differ from those of the train split: only in train: tench; only here: zebra$"):
        load_dataset("folder", root, image_size=8)


def test_class_difference():
    assert class_difference(["a", "b"], ["a"]) == "only in train: b"
    assert class_difference(["a"], ["a", "c"]) == "only here: c"
    assert class_difference([str(i) for i in range(8)], []) == "only in train: 0, 1, 2, 3, 4 and 3 more"
    assert class_difference(["a", "b"], ["b", "a"]) == "the same 2 classes in another order"
