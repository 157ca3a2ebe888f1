"""The dataset registry: ``name -> loader`` giving train/test uint8 sets, class names and defaults.

A loader is a function ``(request) -> DatasetSplits``; registering it with ``@register_dataset``
makes it available to every script by ``--dataset NAME``. ``data/__init__.py`` lists the loader
modules, so importing the package registers them all; this module imports none of them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from common.choices import Choices
from common.errors import UserError
from data.fingerprint import data_fingerprint
from data.image_io import DECODE_MODES
from data.splits import stratified_split
from data.tensors import FeatureSet, FileImageList, ImageTensorSet, check_labels, stratified_subset

ImageSet = ImageTensorSet | FileImageList


@dataclass
class DataRequest:
    """What a loader is asked for: where to look, and at what size and how to decode.

    Image files are decoded with ``decode`` (:data:`~data.image_io.DECODE_MODES`) by the registry
    (it sets the mode of every :class:`FileImageList` a loader returns); a loader that holds
    images as tensors (CIFAR's pickles) resizes them itself with the matching kernel.
    """

    name: str
    root: Path  # the data root; for ``folder`` the dataset folder itself
    image_size: int
    download: bool
    decode: str = "squash"


@dataclass
class DatasetSplits:
    """What a loader returns, before subsetting and decoding."""

    train: ImageSet
    test: ImageSet
    class_names: list[str]
    val: ImageSet | None = None
    # bool [H, W]: pixels inside the image that the prompt may also write (e.g. ABIDE's lower triangle)
    prompt_mask: torch.Tensor | None = None
    # the class names the reference code writes into CLIP's text prompts, where they differ from
    # ``class_names`` (GTSRB: the ILM-VP code's label map); None: ``class_names``
    text_names: list[str] | None = None


@dataclass
class TargetData:
    """A target task ready for the engine: decoded uint8 splits (or, after a method's precompute
    step, what its frozen part computed from them) and their metadata."""

    name: str
    train: ImageTensorSet | FeatureSet
    test: ImageTensorSet | FeatureSet
    class_names: list[str]
    image_size: tuple[int, int]
    batch_size: int
    val: ImageTensorSet | FeatureSet | None = None
    prompt_mask: torch.Tensor | None = None
    # the exact samples read (data/fingerprint.py); empty when the data was built by hand
    fingerprint: str = ""
    location: str = ""  # the resolved data root they were read from
    text_names: list[str] | None = None  # see DatasetSplits.text_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val) if self.val is not None else 0, "test": len(self.test)}


Loader = Callable[[DataRequest], DatasetSplits]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    loader: Loader
    image_size: int
    batch_size: int
    description: str = ""
    layout: str = ""  # where the files must be, shown in "missing data" errors and the README
    # the size every stored image has (CIFAR, SVHN: 32; ABIDE: 200), None where sizes vary
    stored_size: int | None = None


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(
    name: str,
    *,
    image_size: int,
    batch_size: int = 128,
    description: str = "",
    layout: str = "",
    stored_size: int | None = None,
) -> Callable[[Loader], Loader]:
    def decorator(loader: Loader) -> Loader:
        _REGISTRY[name] = DatasetInfo(name, loader, image_size, batch_size, description, layout, stored_size)
        return loader

    return decorator


def dataset_names() -> list[str]:
    return sorted(_REGISTRY)


# ``--dataset``: every registered name with its description
DATASETS = Choices("dataset", lambda: {name: info.description for name, info in _REGISTRY.items()})


def get_dataset_info(name: str) -> DatasetInfo:
    if name not in _REGISTRY:
        raise UserError(f"unknown dataset {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


@dataclass
class SubsetSpec:
    """Seeded class-balanced subsets, applied before decoding so unused images are never read."""

    max_train: int | None = None
    max_test: int | None = None
    train_fraction: float | None = None
    seed: int = 0
    # K-shot: exactly K training images per class (after any validation hold-out), nested across K
    shots: int | None = None
    # None: the dataset's own val split if it has one; 0: no val; F: the dataset's val split, or
    # else a seeded class-stratified fraction F of train held out before the train subsets
    val_fraction: float | None = None


def load_dataset(
    name: str,
    root: Path,
    *,
    image_size: int | None = None,
    batch_size: int | None = None,
    download: bool = False,
    subset: SubsetSpec | None = None,
    decode: str = "squash",
) -> TargetData:
    """Load a registered dataset by name and decode the (sub)sets the run will use."""
    info = get_dataset_info(name)
    if decode not in DECODE_MODES:
        raise UserError(f"unknown decode mode {decode!r}; choose from {', '.join(DECODE_MODES)}")
    size = image_size or info.image_size
    request = DataRequest(name=name, root=Path(root), image_size=size, download=download, decode=decode)
    splits = with_decode(info.loader(request), decode)
    subset = subset or SubsetSpec()
    num_classes = len(splits.class_names)
    if num_classes < 2:
        raise UserError(f"dataset {name!r} under {root} has {num_classes} class{'es' if num_classes != 1 else ''} "
                        f"({', '.join(splits.class_names) or 'none'}); classification needs at least two")  # fmt: skip
    for split_name, split in (("train", splits.train), ("test", splits.test), ("val", splits.val)):
        if split is not None:
            check_labels(split.labels, num_classes, f"{name} {split_name} split")
    train_pool, val_source, val_pool = torch.arange(len(splits.train)), splits.val, None
    if subset.val_fraction == 0:
        val_source = None
    elif splits.val is None and subset.val_fraction is not None:
        train_pool, val_pool = stratified_split(splits.train.labels, subset.val_fraction, seed=subset.seed)
        val_source = splits.train
    if subset.shots is not None and (subset.max_train is not None or subset.train_fraction is not None):
        raise UserError("--shots sets the training set's size; drop --max-train-samples and --train-fraction")
    if subset.shots is not None:
        # every class of the dataset, so one without any training image left is reported too
        have = torch.bincount(splits.train.labels[train_pool], minlength=num_classes)
        short = [c for c in range(num_classes) if have[c] < subset.shots]
        if short:
            held = " after the validation hold-out" if val_pool is not None else ""
            raise UserError(
                f"--shots {subset.shots}: class {splits.class_names[short[0]]!r} has only {int(have[short[0]])} training images{held}"
                f" ({len(short)} of {num_classes} classes have fewer)"
            )
    train_idx = train_pool[
        stratified_subset(splits.train.labels[train_pool], count=subset.max_train, per_class=subset.shots, seed=subset.seed)
    ]
    if subset.train_fraction is not None:
        # a fraction of the (possibly capped) training set; for one seed, smaller fractions are
        # subsets of larger ones, since both take the head of the same per-class permutation
        train_idx = train_idx[stratified_subset(splits.train.labels[train_idx], fraction=subset.train_fraction, seed=subset.seed)]
    test_idx = stratified_subset(splits.test.labels, count=subset.max_test, seed=subset.seed)
    train_idx = None if len(train_idx) == len(splits.train) else train_idx
    train = splits.train.take(train_idx)
    test = splits.test.take(test_idx)
    used = [("train", splits.train, train_idx), ("test", splits.test, test_idx)]
    val = None
    if val_source is not None:
        if val_pool is None:
            val_pool = torch.arange(len(val_source))
        val_idx = val_pool[stratified_subset(val_source.labels[val_pool], count=subset.max_test, seed=subset.seed)]
        val = val_source.take(val_idx)
        used.append(("val", val_source, val_idx))
    if len(train) == 0 or len(test) == 0:
        raise UserError(f"dataset {name!r} under {root} has an empty train or test split")
    present = torch.unique(train.labels)
    if len(present) < 2:
        raise UserError(f"the train split of dataset {name!r} under {root} holds images of one class only "
                        f"({splits.class_names[int(present[0])]}); classification needs at least two")  # fmt: skip
    return TargetData(
        name=name,
        train=train,
        test=test,
        class_names=list(splits.class_names),
        image_size=train.image_size,
        batch_size=batch_size or info.batch_size,
        val=val,
        prompt_mask=splits.prompt_mask,
        fingerprint=data_fingerprint(root, splits.class_names, train.image_size, used),
        location=str(Path(root).resolve()),
        text_names=None if splits.text_names is None else list(splits.text_names),
    )


def with_decode(splits: DatasetSplits, decode: str) -> DatasetSplits:
    """``splits`` with every image-file list set to decode by ``decode``."""

    def apply(split: ImageSet | None) -> ImageSet | None:
        return replace(split, decode=decode) if isinstance(split, FileImageList) else split

    return replace(splits, train=apply(splits.train), test=apply(splits.test), val=apply(splits.val))


def missing_data_error(name: str, expected: str, searched: Path, how: str) -> UserError:
    """The standard "what is missing, where we looked, how to get it" message."""
    return UserError(f"dataset {name!r} not found: expected {expected} under {searched}; {how}")
