"""data/fingerprint.py: the same samples give the same fingerprint wherever they are, any change another."""
from __future__ import annotations

import pickle
import shutil

from conftest import write_cifar10_pickles, write_image_folder

from data.registry import SubsetSpec, load_dataset


def fingerprint(name, root, **subset) -> str:
    return load_dataset(name, root, image_size=16 if name == "folder" else None, subset=SubsetSpec(**subset)).fingerprint


def test_image_folders_same_files_anywhere_same_fingerprint(tmp_path):
    a = write_image_folder(tmp_path / "a", ["x", "y"], {"train": 3, "test": 2}, size=8)
    first = fingerprint("folder", a)
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 16
    assert fingerprint("folder", a) == first
    shutil.copytree(a, tmp_path / "copy")  # new modification times, same files
    assert fingerprint("folder", tmp_path / "copy") == first
    assert load_dataset("folder", tmp_path / "copy", image_size=16).location == str((tmp_path / "copy").resolve())


def test_image_folders_any_change_changes_the_fingerprint(tmp_path):
    a = write_image_folder(tmp_path / "a", ["x", "y"], {"train": 3, "test": 2}, size=8)
    seen = {fingerprint("folder", a)}
    shutil.copy(a / "train" / "x" / "0000.png", a / "train" / "x" / "0100.png")  # an added image
    seen.add(fingerprint("folder", a))
    (a / "train" / "x" / "0100.png").rename(a / "train" / "y" / "0100.png")  # the same file, another label
    seen.add(fingerprint("folder", a))
    (a / "train" / "y" / "0100.png").write_bytes((a / "train" / "y" / "0100.png").read_bytes() + b"\0")  # another size
    seen.add(fingerprint("folder", a))
    seen.add(fingerprint("folder", a, max_train=4))  # another subset of the same files
    assert len(seen) == 5


def test_decoded_tensor_sets_hash_every_pixel(tmp_path):
    write_cifar10_pickles(tmp_path / "one")
    write_cifar10_pickles(tmp_path / "two")
    assert fingerprint("cifar10", tmp_path / "one") == fingerprint("cifar10", tmp_path / "two")
    assert fingerprint("cifar10", tmp_path / "one") != fingerprint("cifar10", tmp_path / "one", max_train=20)
    # one pixel of one training image changed
    path = tmp_path / "two" / "cifar-10-batches-py" / "data_batch_3"
    batch = pickle.loads(path.read_bytes())
    batch[b"data"][0, 0] ^= 1
    path.write_bytes(pickle.dumps(batch))
    assert fingerprint("cifar10", tmp_path / "one") != fingerprint("cifar10", tmp_path / "two")


def test_hashing_in_chunks_equals_hashing_whole(monkeypatch, tmp_path):
    import data.fingerprint as fp

    write_cifar10_pickles(tmp_path)
    whole = [fingerprint("cifar10", tmp_path), fingerprint("cifar10", tmp_path, max_train=30)]
    monkeypatch.setattr(fp, "_ROWS_PER_CHUNK", 7)  # 50 and 30 rows: several chunks, the last one short
    assert [fingerprint("cifar10", tmp_path), fingerprint("cifar10", tmp_path, max_train=30)] == whole
