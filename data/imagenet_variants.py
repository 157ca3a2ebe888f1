"""ImageNet-R and ImageNet-Sketch, the two ImageNet-class targets of the ILM-VP paper's CLIP table.

Both are released as one folder per ImageNet-1k WordNet id (wnid) holding that class's images:
ImageNet-R (Hendrycks et al., 2021) as ``imagenet-r/<wnid>/*.jpg`` for 200 classes, ImageNet-Sketch
(Wang et al., 2019) as ``sketch/<wnid>/*.JPEG`` for all 1000. CLIP's text prompts need the class
names, which the folders do not carry: each wnid is named by the first lemma of its ImageNet-1k
description in timm (``n01443537`` -> ``goldfish``); classes are ordered by wnid. Two pairs of
ImageNet-1k classes share a first lemma (``crane``, ``maillot``), so Sketch has two names twice.

Under the data root, ImageNet-R is read from ``imagenet-r/``; ImageNet-Sketch from the first of
``imagenet-sketch/``, ``imagenet-sketch/sketch/`` and ``sketch/`` that holds wnid folders.

Neither dataset, nor the ILM-VP paper, defines a train/test split. Unless a split file in CoOp's
format (``split_imagenet_r.json`` / ``split_imagenet_sketch.json``, paths relative to the folder
holding the wnid folders) is present, a class-stratified 80/20 split with a fixed seed is used,
independent of the run's ``--seed``, so every run and every method is tested on the same images.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from common.errors import UserError
from data.coop import read_coop_dataset
from data.folder import read_image_folder_split
from data.registry import DataRequest, DatasetSplits, missing_data_error, register_dataset
from data.splits import stratified_split
from data.tensors import FileImageList

TEST_FRACTION = 0.2
SPLIT_SEED = 0
WNID = re.compile(r"n\d{8}")


@dataclass(frozen=True)
class ImageNetVariant:
    name: str  # --dataset NAME
    folders: tuple[str, ...]  # candidate image folders under the data root; the first holding wnid folders is used
    files: str  # file pattern inside each <wnid>/ folder, as released
    split_file: str  # optional CoOp-format split, inside the image folder
    description: str
    source: str  # where the images come from

    @property
    def layout(self) -> str:
        return " or ".join(f"{folder}/<wnid>/{self.files}" for folder in self.folders)


IMAGENET_R = ImageNetVariant(
    "imagenet-r", ("imagenet-r",), "*.jpg", "split_imagenet_r.json",
    "ImageNet-R, renditions of 200 ImageNet classes (Hendrycks et al., 2021)",
    "imagenet-r.tar from https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar (unpacks to imagenet-r/<wnid>/)",
)  # fmt: skip
IMAGENET_SKETCH = ImageNetVariant(
    "imagenet-sketch", ("imagenet-sketch", "imagenet-sketch/sketch", "sketch"), "*.JPEG", "split_imagenet_sketch.json",
    "ImageNet-Sketch, sketches of the 1000 ImageNet classes (Wang et al., 2019)",
    "the archive linked from https://github.com/HaohanWang/ImageNet-Sketch (unpacks to sketch/<wnid>/)",
)  # fmt: skip


@lru_cache(maxsize=1)
def imagenet_lemmas() -> dict[str, str]:
    """``wnid -> first lemma`` for the 1000 ImageNet-1k classes (``n01443537 -> goldfish``)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return {wnid: text.split(",")[0].strip() for wnid, text in zip(info.label_names(), info.label_descriptions())}


def imagenet_class_names(wnids: Sequence[str], folder: Path) -> list[str]:
    """The ImageNet-1k name of each wnid folder of ``folder``; an unknown folder is an error."""
    lemmas = imagenet_lemmas()
    for wnid in wnids:
        if wnid not in lemmas:
            raise UserError(
                f"class folder {folder / wnid} is not an ImageNet-1k wnid (expected names like n01443537, one of the 1000 ImageNet classes)"
            )
    return [lemmas[wnid] for wnid in wnids]


def find_image_folder(spec: ImageNetVariant, root: Path) -> Path:
    """The first of the spec's candidate folders under ``root`` that holds ``<wnid>/`` folders."""
    for candidate in spec.folders:
        folder = root / candidate
        if folder.is_dir() and any(p.is_dir() and WNID.fullmatch(p.name) for p in folder.iterdir()):
            return folder
    raise missing_data_error(
        spec.name,
        spec.layout,
        root,
        f"images: {spec.source}; set VP_DATA or --data-path to the folder holding "
        + " or ".join(f"{top}/" for top in dict.fromkeys(f.split("/")[0] for f in spec.folders)),
    )


def load_imagenet_variant(spec: ImageNetVariant, request: DataRequest) -> DatasetSplits:
    """The spec's split file if present, else the fixed class-stratified split of all its images."""
    folder = find_image_folder(spec, request.root)
    split_file = folder / spec.split_file
    if split_file.is_file():
        return read_coop_dataset(spec.name, split_file, folder, request.image_size)
    # folder names checked before the files of every class are listed
    class_names = imagenet_class_names(sorted(p.name for p in folder.iterdir() if p.is_dir()), folder)
    images, _ = read_image_folder_split(folder, request.image_size)
    train_idx, test_idx = stratified_split(images.labels, TEST_FRACTION, SPLIT_SEED)

    def part(indices: torch.Tensor, split: str) -> FileImageList:
        return FileImageList([images.paths[i] for i in indices], images.labels[indices], images.size, label=f"{spec.name}-{split}")

    return DatasetSplits(train=part(train_idx, "train"), test=part(test_idx, "test"), class_names=class_names)


@register_dataset(
    IMAGENET_R.name, image_size=128, batch_size=128, description=IMAGENET_R.description, layout=IMAGENET_R.layout
)
def load_imagenet_r(request: DataRequest) -> DatasetSplits:
    return load_imagenet_variant(IMAGENET_R, request)


@register_dataset(
    IMAGENET_SKETCH.name, image_size=128, batch_size=128, description=IMAGENET_SKETCH.description, layout=IMAGENET_SKETCH.layout
)
def load_imagenet_sketch(request: DataRequest) -> DatasetSplits:
    return load_imagenet_variant(IMAGENET_SKETCH, request)
