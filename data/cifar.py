"""CIFAR-10/100 from torchvision's pickled batches or from an image-folder tree."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from common.errors import UserError
from data.folder import read_image_folder
from data.registry import DataRequest, DatasetSplits, missing_data_error, register_dataset
from data.tensors import ImageTensorSet
from data.torchvision_download import download_with_torchvision

_CIFAR = {
    # name: (torchvision folder, train files, test files, meta file, label key, names key, torchvision class)
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
        b"labels",
        b"label_names",
        "CIFAR10",
    ),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", b"fine_labels", b"fine_label_names", "CIFAR100"),
}


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="bytes")
    except FileNotFoundError as exc:
        raise UserError(f"CIFAR file missing: {path}") from exc
    except (pickle.UnpicklingError, EOFError, OSError) as exc:
        raise UserError(f"cannot read CIFAR file {path}: {exc}") from exc


def _read_batches(folder: Path, files: list[str], label_key: bytes) -> ImageTensorSet:
    images, labels = [], []
    for name in files:
        batch = _unpickle(folder / name)
        if b"data" not in batch or label_key not in batch:
            raise UserError(f"{folder / name} is not a CIFAR batch (keys {sorted(batch)[:4]})")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch[label_key])
    return ImageTensorSet(torch.from_numpy(np.concatenate(images)), torch.tensor(labels))


def _resize(data: ImageTensorSet, size: int, decode: str = "squash") -> ImageTensorSet:
    """Square images to ``size``: bilinear for ``squash``, bicubic for ``crop`` (a square needs no crop)."""
    if data.image_size == (size, size):
        return data
    mode = "bicubic" if decode == "crop" else "bilinear"
    images = torch.nn.functional.interpolate(data.images.float(), size=(size, size), mode=mode, antialias=True)
    return ImageTensorSet(images.round().clamp(0, 255).to(torch.uint8), data.labels)


def load_cifar(request: DataRequest) -> DatasetSplits:
    folder_name, train_files, test_files, meta, label_key, names_key, tv_class = _CIFAR[request.name]
    image_tree = request.root / request.name
    if (image_tree / "train").is_dir():
        return read_image_folder(request.name, image_tree, request.image_size, "add the missing split folder")
    pickles = request.root / folder_name
    if not pickles.is_dir() and request.download:
        download_with_torchvision(tv_class, request.root, request.name, splits=({"train": True}, {"train": False}))
    if not pickles.is_dir():
        raise missing_data_error(
            request.name,
            f"torchvision's {folder_name}/ (from https://www.cs.toronto.edu/~kriz/{folder_name}.tar.gz)"
            f" or an image-folder tree {request.name}/{{train,test}}/<class>/*",
            request.root,
            "download it there, or set VP_DATA / --data-path to the folder holding it",
        )
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in _unpickle(pickles / meta)[names_key]]
    names = [n.replace("_", " ") for n in names]
    train = _resize(_read_batches(pickles, train_files, label_key), request.image_size, request.decode)
    test = _resize(_read_batches(pickles, test_files, label_key), request.image_size, request.decode)
    return DatasetSplits(train=train, test=test, class_names=names)


for _name, _classes in (("cifar10", 10), ("cifar100", 100)):
    register_dataset(
        _name,
        image_size=32,
        batch_size=128,
        description=f"CIFAR-{_classes} (Krizhevsky, 2009)",
        layout=f"{_CIFAR[_name][0]}/ (torchvision) or {_name}/{{train,test}}/<class>/*",
        stored_size=32,
    )(load_cifar)
