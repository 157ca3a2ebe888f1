"""SVHN cropped digits from torchvision's ``.mat`` files."""
from __future__ import annotations

import numpy as np
import torch

from common.errors import UserError
from data.registry import DataRequest, DatasetSplits, missing_data_error, register_dataset
from data.tensors import ImageTensorSet
from data.torchvision_download import download_with_torchvision

_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def _read_mat(path) -> ImageTensorSet:
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
        images = np.asarray(mat["X"], dtype=np.uint8)  # [H, W, C, N]
        labels = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot read SVHN file {path}: {exc}") from exc
    labels[labels == 10] = 0  # the files store digit 0 as class 10
    return ImageTensorSet(torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1))), torch.from_numpy(labels))


@register_dataset(
    "svhn",
    image_size=32,
    batch_size=128,
    description="Street View House Numbers (Netzer et al., 2011)",
    layout="svhn/train_32x32.mat, svhn/test_32x32.mat",
    stored_size=32,
)
def load_svhn(request: DataRequest) -> DatasetSplits:
    folder = request.root / "svhn"
    missing = [f for f in _FILES.values() if not (folder / f).is_file()]
    if missing and request.download:
        download_with_torchvision("SVHN", folder, "svhn", splits=({"split": "train"}, {"split": "test"}))
        missing = [f for f in _FILES.values() if not (folder / f).is_file()]
    if missing:
        raise missing_data_error(
            "svhn", " and ".join(missing), folder, "download them from http://ufldl.stanford.edu/housenumbers/"
        )
    train, test = _read_mat(folder / _FILES["train"]), _read_mat(folder / _FILES["test"])
    if request.image_size != 32:
        raise UserError("svhn images are 32x32; --image-size must be 32 for this dataset")
    return DatasetSplits(train=train, test=test, class_names=[str(d) for d in range(10)])
