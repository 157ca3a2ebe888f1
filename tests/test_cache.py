"""The decoded-image cache: built once, reused, rebuilt when files or the size change."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from dataset_fixtures import write_coop_dataset
from PIL import Image

import data.cache as cache
from common.errors import UserError
from data.image_io import decode_images
from data.registry import load_dataset
from data.tensors import FileImageList


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        path = tmp_path / "img" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def memmap_all(monkeypatch, tmp_path):
    """Cache every set (threshold 0) under a temporary cache folder; count decoded images."""
    monkeypatch.setattr(cache, "MEMMAP_MIN_BYTES", 0)
    monkeypatch.setattr(cache.cfg, "CACHE_PATH", tmp_path / "cache")
    calls = []
    real = cache.read_image

    def counting(path, size, decode="squash"):
        calls.append(path)
        return real(path, size, decode)

    monkeypatch.setattr(cache, "read_image", counting)
    return tmp_path / "cache", calls


def test_small_sets_stay_in_memory(images, tmp_path, monkeypatch):
    monkeypatch.setattr(cache.cfg, "CACHE_PATH", tmp_path / "cache")
    out = cache.load_images(images, (16, 16))
    assert torch.equal(out, decode_images(images, (16, 16)))
    assert not (tmp_path / "cache").exists()


def test_cache_built_once_and_reused(images, memmap_all):
    folder, calls = memmap_all
    first = cache.load_images(images, (16, 16), label="demo")
    assert torch.equal(first, decode_images(images, (16, 16)))
    (file,) = folder.iterdir()
    assert file.name.startswith("demo-5x3x16x16-") and file.suffix == ".npy" and len(calls) == 5
    assert np.array_equal(np.load(file), first.numpy())
    second = cache.load_images(images, (16, 16), label="demo")
    assert len(calls) == 5 and torch.equal(first, second)  # nothing decoded again
    assert sorted(folder.iterdir()) == [file]
    second[0] = 0  # copy-on-write mapping: the cache file itself never changes
    assert not torch.equal(first[0], second[0])  # each run maps its own private view
    assert np.array_equal(np.load(file)[0], decode_images(images[:1], (16, 16))[0].numpy())


def test_cache_invalidated_by_changed_file_or_size(images, memmap_all):
    folder, calls = memmap_all
    before = cache.load_images(images, (16, 16))
    Image.fromarray(np.full((20, 24, 3), 7, dtype=np.uint8)).save(images[2])
    st = os.stat(images[2])
    os.utime(images[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = cache.load_images(images, (16, 16))
    assert len(calls) == 10 and len(list(folder.glob("*.npy"))) == 2
    assert torch.all(after[2] == 7) and torch.equal(after[[0, 1, 3, 4]], before[[0, 1, 3, 4]])
    resized = cache.load_images(images, (8, 8))
    assert resized.shape == (5, 3, 8, 8) and len(calls) == 15
    subset = cache.load_images(images[:3], (8, 8))  # another file list, another cache
    assert torch.equal(subset, resized[:3]) and len(list(folder.glob("*.npy"))) == 4


@pytest.mark.slow
def test_decode_mode_keys_its_own_cache(images, memmap_all):
    folder, calls = memmap_all
    squashed = cache.load_images(images, (16, 16))
    cropped = cache.load_images(images, (16, 16), decode="crop")
    assert len(list(folder.glob("*.npy"))) == 2 and len(calls) == 10
    assert torch.equal(cropped, decode_images(images, (16, 16), decode="crop"))
    assert not torch.equal(squashed, cropped)  # 20x24 images: squashed and centre-cropped differ
    assert torch.equal(cache.load_images(images, (16, 16), decode="crop"), cropped) and len(calls) == 10  # reused
    # squash keeps the key it had before decode modes existed, so existing caches stay valid
    assert cache.cache_key(images, (16, 16)) == cache.cache_key(images, (16, 16), "squash") != cache.cache_key(images, (16, 16), "crop")


def test_unreadable_image_leaves_no_cache(images, memmap_all):
    folder, _ = memmap_all
    images[3].write_bytes(b"garbage")
    with pytest.raises(UserError, match="3.png"):
        cache.load_images(images, (16, 16))
    assert list(folder.iterdir()) == []
    images[1].unlink()
    with pytest.raises(UserError, match="not found: .*1.png"):
        cache.load_images(images, (16, 16))


def test_corrupt_cache_is_reported(images, memmap_all):
    folder, _ = memmap_all
    cache.load_images(images, (16, 16))
    (file,) = folder.iterdir()
    np.save(file, np.zeros((2, 3, 16, 16), dtype=np.uint8))
    with pytest.raises(UserError, match="delete it to rebuild"):
        cache.load_images(images, (16, 16))


def test_file_list_take_and_dataset_use_the_cache(tmp_path, memmap_all):
    folder, calls = memmap_all
    write_coop_dataset(tmp_path / "data", "eurosat")
    first = load_dataset("eurosat", tmp_path / "data", image_size=16)
    names = sorted(p.name.split("-")[0] for p in folder.glob("*.npy"))
    assert names == ["eurosat"] * 3 and len(calls) == 24
    second = load_dataset("eurosat", tmp_path / "data", image_size=16)
    assert len(calls) == 24 and torch.equal(first.train.images, second.train.images)
    listing = FileImageList(sorted((tmp_path / "data" / "eurosat" / "2750").rglob("*.jpg")), [0] * 24, (16, 16), label="x")
    assert torch.equal(listing.take([5, 2]).images, decode_images([listing.paths[5], listing.paths[2]], (16, 16)))


def _rss_file_kib() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("RssFile:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_released_map_pages_leave_resident_memory_and_data_intact(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, size=(256, 3, 64, 64), dtype=np.uint8)  # 3 MiB
    path = tmp_path / "big.npy"
    np.save(path, array)
    mapped = cache.open_cache(path, array.shape)
    assert cache.is_memory_mapped(mapped) and not cache.is_memory_mapped(mapped.clone())
    cache.release_pages(mapped)  # the clone above read every page
    before = _rss_file_kib()
    assert int(mapped.sum()) == int(array.sum())  # touches every page
    touched = _rss_file_kib()
    cache.release_pages(mapped)
    released = _rss_file_kib()
    assert touched - before > 2000 and touched - released > 2000, (before, touched, released)
    assert torch.equal(mapped, torch.from_numpy(array))  # pages come back from the file unchanged


def test_loader_over_a_mapped_set_equals_one_in_memory(images, memmap_all, monkeypatch):
    import data.loader as loader

    paths = images
    mapped = cache.load_images(paths, (20, 24))
    assert cache.is_memory_mapped(mapped)
    released = []
    monkeypatch.setattr(loader, "release_pages", lambda t: released.append(t.shape))
    monkeypatch.setattr(loader, "RELEASE_EVERY_BYTES", 1)
    labels = torch.arange(len(paths)) % 2
    from data.tensors import ImageTensorSet

    a = loader.BatchLoader(ImageTensorSet(mapped, labels), 2, torch.device("cpu"), shuffle=True, seed=3)
    b = loader.BatchLoader(ImageTensorSet(mapped.clone(), labels), 2, torch.device("cpu"), shuffle=True, seed=3)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert len(released) == len(a) + 1  # after every batch here, and once at the end of the epoch
