"""Image-folder datasets: ``<root>/train/<class>/*`` and ``<root>/test/<class>/*``."""
from __future__ import annotations

from pathlib import Path

from common.errors import UserError
from data.image_io import list_class_folders, readable_class_name
from data.registry import DataRequest, DatasetSplits, missing_data_error, register_dataset
from data.tensors import FileImageList


def read_image_folder_split(root: Path, size: int, class_names: list[str] | None = None) -> tuple[FileImageList, list[str]]:
    """One split of an image-folder tree; with ``class_names`` given, folders must match them."""
    folders = list_class_folders(root)
    empty = [name for name, files in folders if not files]
    if empty and len(empty) < len(folders):  # a class without images would still be a class, mapped and scored
        shown = ", ".join(str(root / name) for name in empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise UserError(f"class folder {shown} holds no images (extensions: jpg, png, ppm, ...); add its images or remove the folder")
    names = [readable_class_name(name) for name, _ in folders]
    if class_names is not None and names != class_names:
        raise UserError(f"class folders of {root} differ from those of the train split: {class_difference(class_names, names)}")
    paths, labels = [], []
    for label, (_, files) in enumerate(folders):
        paths.extend(files)
        labels.extend([label] * len(files))
    if not paths:
        raise UserError(f"no images found in {root}/<class>/ (extensions: jpg, png, ppm, ...)")
    return FileImageList(paths, labels, (size, size)), names


def class_difference(train: list[str], other: list[str]) -> str:
    """What differs between two class lists, naming the classes on each side (the first five)."""

    def names(classes: list[str]) -> str:
        return ", ".join(classes[:5]) + (f" and {len(classes) - 5} more" if len(classes) > 5 else "")

    only_train, only_other = [c for c in train if c not in other], [c for c in other if c not in train]
    if not only_train and not only_other:
        return f"the same {len(train)} classes in another order"
    parts = [f"only in train: {names(only_train)}" if only_train else "", f"only here: {names(only_other)}" if only_other else ""]
    return "; ".join(p for p in parts if p)


def read_image_folder(name: str, root: Path, size: int, how: str) -> DatasetSplits:
    """``root/{train,test}/<class>/*``: class names from the train folders, made human-readable."""
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        raise missing_data_error(name, "train/<class>/* and test/<class>/* image folders", root, how)
    train, names = read_image_folder_split(root / "train", size)
    test, _ = read_image_folder_split(root / "test", size, names)
    return DatasetSplits(train=train, test=test, class_names=names)


@register_dataset(
    "folder",
    image_size=128,
    batch_size=128,
    description="any image-folder dataset (--data-path DIR)",
    layout="DIR/train/<class>/*, DIR/test/<class>/*",
)
def load_folder(request: DataRequest) -> DatasetSplits:
    return read_image_folder(
        "folder", request.root, request.image_size, "pass the dataset folder with --data-path DIR"
    )
