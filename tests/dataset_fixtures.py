"""Writers of tiny datasets in the real on-disk formats of the CoOp-split datasets and ABIDE."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from data.coop import COOP_DATASETS, CoopDataset

# Three real class names per dataset as they appear in CoOp's split files, and a path pattern
# like the real ones (relative to the image folder).
COOP_FIXTURE_CLASSES = {
    "flowers102": (["pink primrose", "hard-leaved pocket orchid", "canterbury bells"], "image_{n:05d}.jpg"),
    "dtd": (["banded", "blotchy", "braided"], "{c}/{c}_{n:04d}.jpg"),
    "ucf101": (["Apply_Eye_Makeup", "Apply_Lipstick", "Archery"], "{c}/v_{c}_g01_c{n:02d}.jpg"),
    "food101": (["apple_pie", "baby_back_ribs", "baklava"], "{c}/{n}.jpg"),
    "eurosat": (["AnnualCrop", "Forest", "HerbaceousVegetation"], "{c}/{c}_{n}.jpg"),
    "oxfordpets": (["abyssinian", "american_bulldog", "american_pit_bull_terrier"], "{c}_{n}.jpg"),
    "stanfordcars": (["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 Acura TL Sedan"], "cars_{split}/{n:05d}.jpg"),
    "sun397": (["abbey", "airplane_cabin", "airport_terminal"], "{c0}/{c}/sun_{n:04d}.jpg"),
}
COOP_COUNTS = {"train": 4, "val": 2, "test": 2}  # per class


def coop_spec(name: str) -> CoopDataset:
    return next(s for s in COOP_DATASETS if s.name == name)


def write_coop_dataset(root: Path, name: str, counts: dict[str, int] = COOP_COUNTS, image_size: tuple[int, int] = (36, 44)) -> Path:
    """``root/<folder>/<image dir>/...`` JPEGs of varying content and ``split_zhou_<Name>.json``; returns the split file."""
    spec = coop_spec(name)
    classes, pattern = COOP_FIXTURE_CLASSES[name]
    image_root = root / spec.folder / spec.image_dir if spec.image_dir else root / spec.folder
    rng = np.random.default_rng(len(name))
    content, n = {}, 0
    for split, per_class in counts.items():
        entries = []
        for label, cls in enumerate(classes):
            for _ in range(per_class):
                n += 1
                rel = pattern.format(c=cls, c0=cls[0], n=n, split="test" if split == "test" else "train")
                path = image_root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 256, size=(*image_size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(path, quality=95)
                entries.append([rel, label, cls])
        content[split] = entries
    split_file = root / spec.folder / spec.split_file
    split_file.write_text(json.dumps(content))
    return split_file


ROIS = 200


def write_abide(root: Path, groups: dict[str, int], seed: int = 0, vector_size: int = ROIS * (ROIS - 1) // 2) -> dict[str, np.ndarray]:
    """``root/abide/abide.hdf5`` (``patients/<FILE_ID>/cc200``) and the PCP phenotype CSV.

    ``groups`` maps FILE_ID -> DX_GROUP (1 autism, 2 control); returns the vectors written.
    """
    import h5py

    folder = root / "abide"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vectors = {}
    with h5py.File(folder / "abide.hdf5", "w") as fh:
        patients = fh.create_group("patients")
        for subject, dx in groups.items():
            vectors[subject] = rng.uniform(-0.8, 1.0, size=vector_size).astype(np.float32)
            node = patients.create_group(subject)
            node.attrs["y"] = dx
            node.create_dataset("cc200", data=vectors[subject])
    with open(folder / "Phenotypic_V1_0b_preprocessed1.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["", "Unnamed: 0", "SUB_ID", "FILE_ID", "SITE_ID", "DX_GROUP", "AGE_AT_SCAN"])
        for i, (subject, dx) in enumerate(groups.items()):
            writer.writerow([i, i, 50000 + i, subject, subject.split("_")[0], dx, 20.5])
        writer.writerow([99, 99, 59999, "no_filename", "NYU", 1, 30.0])  # PCP rows without data
    return vectors


def abide_groups(asd: int = 10, control: int = 10) -> dict[str, int]:
    subjects = {f"NYU_{50000 + i:07d}": 1 for i in range(asd)}
    subjects.update({f"UM_1_{50100 + i:07d}": 2 for i in range(control)})
    return subjects


# Three real ImageNet-1k wnids with different image counts, so a stratified split differs from a random one.
IMAGENET_FIXTURE_COUNTS = {"n01443537": 5, "n01484850": 10, "n01494475": 15}
IMAGENET_FIXTURE_NAMES = ["goldfish", "great white shark", "hammerhead"]


def write_wnid_folders(folder: Path, counts: dict[str, int] = IMAGENET_FIXTURE_COUNTS, suffix: str = ".jpg") -> list[Path]:
    """``folder/<wnid>/<n><suffix>`` small JPEGs, as ImageNet-R and ImageNet-Sketch unpack; returns the paths."""
    rng = np.random.default_rng(len(counts))
    paths = []
    for wnid, count in counts.items():
        (folder / wnid).mkdir(parents=True, exist_ok=True)
        for n in range(count):
            path = folder / wnid / f"{n}{suffix}"
            Image.fromarray(rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)).save(path, format="JPEG", quality=90)
            paths.append(path)
    return paths
