"""The eight datasets with CoOp's fixed splits (Zhou et al., IJCV 2022), in CoOp's on-disk layout.

Each lives in ``<data root>/<folder>/`` with its images under ``<folder>/<image dir>/`` and the
split file ``<folder>/split_zhou_<Name>.json``: ``{"train": [...], "val": [...], "test": [...]}``,
each entry ``[image path relative to the image dir, label, class name]``. Class names come from
the split file, with ``_`` read as a space (as CoOp's trainers do before building text prompts).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError
from data.registry import DataRequest, DatasetSplits, missing_data_error, register_dataset
from data.tensors import FileImageList

COOP_SPLITS_URL = "https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md"


@dataclass(frozen=True)
class CoopDataset:
    name: str  # --dataset NAME
    folder: str  # <data root>/<folder>/
    split_file: str  # inside <folder>/
    image_dir: str  # inside <folder>/; split paths are relative to it ("" = the folder itself)
    batch_size: int
    description: str
    source: str  # where the images come from

    @property
    def layout(self) -> str:
        images = f"{self.folder}/{self.image_dir}/" if self.image_dir else f"{self.folder}/"
        return f"{images}... and {self.folder}/{self.split_file}"


COOP_DATASETS = [
    CoopDataset("flowers102", "oxford_flowers", "split_zhou_OxfordFlowers.json", "jpg", 128,
                "Oxford Flowers 102 (Nilsback & Zisserman, 2008)",
                "102flowers.tgz from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ (unpacks to jpg/)"),
    CoopDataset("dtd", "dtd", "split_zhou_DescribableTextures.json", "images", 64,
                "Describable Textures (Cimpoi et al., 2014)",
                "dtd-r1.0.1.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/dtd/ (unpacks to dtd/images/<class>/)"),
    CoopDataset("ucf101", "ucf101", "split_zhou_UCF101.json", "UCF-101-midframes", 128,
                "UCF101 actions, middle frame of each clip (Soomro et al., 2012)",
                "UCF-101-midframes.zip linked from CoOp's DATASETS.md (middle frames of https://www.crcv.ucf.edu/data/UCF101.php)"),
    CoopDataset("food101", "food-101", "split_zhou_Food101.json", "images", 128,
                "Food-101 (Bossard et al., 2014)",
                "food-101.tar.gz from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ (unpacks to food-101/images/<class>/)"),
    CoopDataset("eurosat", "eurosat", "split_zhou_EuroSAT.json", "2750", 128,
                "EuroSAT RGB (Helber et al., 2019)",
                "EuroSAT.zip (RGB) from https://github.com/phelber/EuroSAT (unpacks to 2750/<class>/)"),
    CoopDataset("oxfordpets", "oxford_pets", "split_zhou_OxfordPets.json", "images", 64,
                "Oxford-IIIT Pets (Parkhi et al., 2012)",
                "images.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/ (unpacks to images/)"),
    CoopDataset("stanfordcars", "stanford_cars", "split_zhou_StanfordCars.json", "", 128,
                "Stanford Cars (Krause et al., 2013)",
                "cars_train.tgz and cars_test.tgz of Stanford Cars (https://ai.stanford.edu/~jkrause/cars/car_dataset.html or a mirror; unpack to cars_train/, cars_test/)"),
    CoopDataset("sun397", "sun397", "split_zhou_SUN397.json", "SUN397", 128,
                "SUN397 scenes (Xiao et al., 2010)",
                "SUN397.tar.gz from https://vision.princeton.edu/projects/2010/SUN/ (unpacks to SUN397/<letter>/<class>/)"),
]  # fmt: skip


def read_coop_split(split_file: Path) -> dict[str, list]:
    """The parsed split file; each of train/val/test must be a list of ``[path, label, class name]``."""
    try:
        with open(split_file) as fh:
            content = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read split file {split_file}: {exc}") from exc
    if not isinstance(content, dict) or any(not isinstance(content.get(k), list) for k in ("train", "val", "test")):
        raise UserError(f"split file {split_file} must hold lists 'train', 'val' and 'test'")
    for split in ("train", "val", "test"):
        for entry in content[split]:
            if not (
                isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                and isinstance(entry[1], int) and not isinstance(entry[1], bool) and isinstance(entry[2], str)
            ):  # fmt: skip
                raise UserError(f"split file {split_file}: {split} entry {entry!r} is not [relative path, integer label, class name]")
    return content


def coop_class_names(content: dict[str, list], split_file: Path) -> list[str]:
    """Names indexed by label; labels must be 0..K-1, each with one name across all splits."""
    names: dict[int, str] = {}
    for split in ("train", "val", "test"):
        for path, label, name in content[split]:
            if label < 0:
                raise UserError(f"split file {split_file}: {split} entry {path!r} has negative label {label}")
            if names.setdefault(label, name) != name:
                raise UserError(f"split file {split_file}: label {label} is named both {names[label]!r} and {name!r}")
    if not names:
        raise UserError(f"split file {split_file} lists no images")
    missing = [k for k in range(max(names) + 1) if k not in names]
    if missing:
        raise UserError(
            f"split file {split_file}: label {max(names)} is outside the class list; labels {missing[:5]} "
            f"have no class name in any split (labels must be 0..K-1)"
        )
    return [names[k].replace("_", " ") for k in range(len(names))]


def load_coop(spec: CoopDataset, request: DataRequest) -> DatasetSplits:
    folder = request.root / spec.folder
    split_file = folder / spec.split_file
    image_root = folder / spec.image_dir if spec.image_dir else folder
    if not split_file.is_file() or not image_root.is_dir():
        missing = [str(p) for p in (image_root, split_file) if not p.exists()]
        raise missing_data_error(
            spec.name,
            spec.layout + f" (missing: {', '.join(missing)})",
            request.root,
            f"images: {spec.source}; split file: {spec.split_file} from CoOp ({COOP_SPLITS_URL}). "
            f"Set VP_DATA or --data-path to the folder holding {spec.folder}/",
        )
    return read_coop_dataset(spec.name, split_file, image_root, request.image_size)


def read_coop_dataset(name: str, split_file: Path, image_root: Path, image_size: int) -> DatasetSplits:
    """The splits a CoOp-format split file lists, its paths relative to ``image_root``."""
    content = read_coop_split(split_file)
    class_names = coop_class_names(content, split_file)
    size = (image_size, image_size)
    splits = {}
    for split in ("train", "val", "test"):
        paths = [image_root / p for p, _, _ in content[split]]
        for path in paths:
            if not path.is_file():
                raise UserError(f"split file {split_file} lists {split} image {path}, which does not exist")
        labels = [label for _, label, _ in content[split]]
        splits[split] = FileImageList(paths, labels, size, label=f"{name}-{split}") if paths else None
    if splits["train"] is None or splits["test"] is None:
        raise UserError(f"split file {split_file} has an empty train or test list")
    return DatasetSplits(train=splits["train"], test=splits["test"], val=splits["val"], class_names=class_names)


def _register(spec: CoopDataset) -> None:
    register_dataset(spec.name, image_size=128, batch_size=spec.batch_size, description=spec.description, layout=spec.layout)(
        lambda request: load_coop(spec, request)
    )


for _spec in COOP_DATASETS:
    _register(_spec)
