"""Shared fixtures: tiny datasets in the real on-disk formats and a tiny registered network."""
from __future__ import annotations

import os
import pickle
import zlib
from pathlib import Path

os.environ["VP_DOWNLOAD"] = "0"  # tests never touch the network

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from models.networks import SourceNetwork, register_network

REPO = Path(__file__).resolve().parents[1]
SHARED = os.environ.get("VP_SHARED")  # ../shared beside the checkout; .ci/run sets it

TINY_NETWORK = "tiny_test_net"
TINY_SOURCE_CLASSES = 20


class TinyNet(nn.Module):
    """A small CNN standing in for an ImageNet classifier: fast, deterministic, with BN to freeze."""

    def __init__(self, num_classes: int = TINY_SOURCE_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 5, stride=4), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


@register_network(TINY_NETWORK)
def _tiny(weights_path, download) -> SourceNetwork:
    torch.manual_seed(0)
    model = TinyNet()
    if weights_path is not None:
        model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    names = [f"source class {i}" for i in range(TINY_SOURCE_CLASSES)]
    return SourceNetwork(TINY_NETWORK, model, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), names, input_size=64)


def random_images(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def write_cifar10_pickles(root: Path, per_batch: int = 10, test: int = 20) -> Path:
    """torchvision's ``cifar-10-batches-py`` layout: five data batches, a test batch, batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        n = test if name == "test_batch" else per_batch
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(x) for x in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"filenames": [f"{name}_{j}.png".encode() for j in range(n)],
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [n.encode() for n in names], b"num_cases_per_batch": per_batch}, fh)
    return folder


def write_image_folder(root: Path, classes: list[str], per_class: dict[str, int], size: int = 32, ext: str = ".png") -> Path:
    """``root/{split}/<class>/<i>.png`` with random images; ``per_class`` maps split -> count. The images are
    seeded by a stable hash of (split, class index), the same in every process (``hash`` of a string is not)."""
    for split, count in per_class.items():
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(random_images(count, size, seed=zlib.crc32(f"{split}/{c}".encode()))):
                Image.fromarray(img).save(folder / f"{i:04d}{ext}")
    return root


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    """A data root holding tiny CIFAR-10 pickles (50 train, 20 test)."""
    write_cifar10_pickles(tmp_path)
    return tmp_path


@pytest.fixture
def folder_dataset(tmp_path: Path) -> Path:
    """An image-folder dataset with 3 classes, 8 train and 4 test images each, 40x40 PNG."""
    return write_image_folder(tmp_path / "flowers", ["Rose_Red", "tulip", "daisy-white"], {"train": 8, "test": 4}, size=40)


@pytest.fixture
def shared_root() -> Path:
    if not SHARED:
        pytest.skip("VP_SHARED is not set (real data in ../shared)")
    path = Path(SHARED)
    if not (path / "datasets" / "cifar10" / "train").is_dir():
        pytest.skip(f"no CIFAR-10 image folders under {path}/datasets")
    return path


def tiny_args(results: Path, data: Path, *extra: str) -> list[str]:
    """Flags for a seconds-long run on the tiny network."""
    return [
        "--network", TINY_NETWORK, "--dataset", "cifar10", "--data-path", str(data), "--results-path", str(results),
        "--epochs", "2", "--batch-size", "16", "--device", "cpu", *extra,
    ]  # fmt: skip


def interrupt_at_epoch(monkeypatch, stop_epoch: int = 1) -> None:
    """Stop every run, as Ctrl-C would, at the start of epoch ``stop_epoch + 1`` (0-based
    ``stop_epoch``): after the checkpoint of the epochs before it is written."""
    from algorithms.engine import Trainer

    original = Trainer.train_epoch

    def interrupted(self, epoch):
        if epoch == stop_epoch:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)


def straight_and_resumed(
    method: str, args, tmp_path: Path, monkeypatch, stop_epoch: int = 1, resume: tuple[str, ...] = ("--resume",)
) -> tuple[dict, dict]:
    """The last checkpoints of ``method`` run straight through (results under ``tmp_path/straight``)
    and run interrupted at the start of epoch ``stop_epoch + 1`` then continued with the same flags
    plus ``resume`` (under ``tmp_path/cut``); ``args(results)`` gives the flags. The one check of
    "a resumed run ends exactly like an uninterrupted one", with :func:`same_training`."""
    from runner.cli import main

    assert main(method, args(tmp_path / "straight")) == 0
    with monkeypatch.context() as patch:
        interrupt_at_epoch(patch, stop_epoch)
        assert main(method, args(tmp_path / "cut")) == 130
    assert torch.load(next((tmp_path / "cut").rglob("ckpt.pth")), weights_only=False)["epoch"] == stop_epoch  # stopped there
    assert main(method, [*args(tmp_path / "cut"), *resume]) == 0
    return tuple(torch.load(next((tmp_path / d).rglob("ckpt.pth")), weights_only=False) for d in ("straight", "cut"))


def same_training(straight: dict, resumed: dict) -> bool:
    """Two checkpoints hold the same trained tensors and the same history of epochs, learning
    rates, losses and accuracies."""
    keys = ("epoch", "lr", "train_loss", "train_acc", "test_acc")
    return (
        straight["model"].keys() == resumed["model"].keys()
        and all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"])
        and [[r[k] for k in keys] for r in straight["history"]] == [[r[k] for k in keys] for r in resumed["history"]]
    )
