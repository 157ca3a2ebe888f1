"""ABIDE autism fMRI connectivity as 200x200 images (the ILM-VP paper's non-vision target).

Files, in ``<data root>/abide/``:

- ``abide.hdf5``: one group per subject, ``patients/<FILE_ID>``, holding the dataset ``cc200``:
  the 19900 Pearson correlations between the 200 CC200 regions' time series, i.e. the strict
  lower triangle of the symmetric correlation matrix in row-major order. This is the file that
  acerta-abide's ``download_abide.py`` + ``prepare_data.py`` (Heinsfeld et al., 2018,
  https://github.com/lsa-pucrs/acerta-abide) build from the Preprocessed Connectomes Project's
  ABIDE I release (C-PAC, ``filt_global``, ``rois_cc200``).
- ``Phenotypic_V1_0b_preprocessed1.csv``: the PCP phenotype table (columns ``FILE_ID`` and
  ``DX_GROUP``, 1 = autism spectrum disorder, 2 = typical control).

Each subject's vector is min-max normalized to [0, 1], written into the strict upper triangle
of a 200x200 image (diagonal and lower triangle zero), stored as uint8 (``round(255 v)``, the
precision of every image in the pipeline) and repeated on three channels. The prompt may write
on the diagonal and lower triangle (``prompt_mask``). Train/test: a class-stratified 90/10 split
with a fixed seed, the same for every run.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from common.errors import UserError
from data.registry import DataRequest, DatasetSplits, missing_data_error, register_dataset
from data.splits import stratified_split
from data.tensors import ImageTensorSet

ROIS = 200
HDF5_FILE = "abide.hdf5"
PHENOTYPE_FILE = "Phenotypic_V1_0b_preprocessed1.csv"
CLASS_NAMES = ["non ASD", "ASD"]
DX_TO_LABEL = {1: 1, 2: 0}  # DX_GROUP 1 = autism -> "ASD"; 2 = control -> "non ASD"
TEST_FRACTION = 0.1
SPLIT_SEED = 0
LAYOUT = f"abide/{HDF5_FILE} (patients/<FILE_ID>/cc200) and abide/{PHENOTYPE_FILE}"
HOW = (
    f"{HDF5_FILE}: run acerta-abide's download_abide.py and prepare_data.py (https://github.com/lsa-pucrs/acerta-abide, "
    "derivative cc200, from http://preprocessed-connectomes-project.org/abide/); "
    f"{PHENOTYPE_FILE}: https://s3.amazonaws.com/fcp-indi/data/Projects/ABIDE_Initiative/{PHENOTYPE_FILE}"
)


def read_phenotypes(path: Path) -> dict[str, int]:
    """``FILE_ID -> DX_GROUP`` from the PCP phenotype table."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read phenotype table {path}: {exc}") from exc
    if not rows or "FILE_ID" not in rows[0] or "DX_GROUP" not in rows[0]:
        raise UserError(f"phenotype table {path} needs the columns FILE_ID and DX_GROUP")
    groups = {}
    for row in rows:
        try:
            groups[row["FILE_ID"]] = int(float(row["DX_GROUP"]))
        except (TypeError, ValueError) as exc:
            raise UserError(f"{path}: FILE_ID {row['FILE_ID']!r} has DX_GROUP {row['DX_GROUP']!r}, not 1 or 2") from exc
    return groups


def connectivity_image(vector: np.ndarray) -> np.ndarray:
    """A CC200 vector (strict lower triangle, row-major) as a uint8 [200, 200] upper-triangle image."""
    v = vector.astype(np.float64)
    lo, hi = float(v.min()), float(v.max())
    v = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    image = np.zeros((ROIS, ROIS), dtype=np.uint8)
    rows, cols = np.tril_indices(ROIS, k=-1)
    image[cols, rows] = np.round(v * 255.0).astype(np.uint8)  # corr[i, j], i > j, lands at [j, i]
    return image


def read_abide(folder: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images ``uint8 [N, 3, 200, 200]``, labels, and subject ids (sorted) of every subject in the HDF5 file."""
    import h5py

    hdf5, table = folder / HDF5_FILE, folder / PHENOTYPE_FILE
    groups = read_phenotypes(table)
    try:
        with h5py.File(hdf5, "r") as fh:
            if "patients" not in fh:
                raise UserError(f"{hdf5} has no 'patients' group (expected patients/<FILE_ID>/cc200)")
            subjects = sorted(fh["patients"])
            images = np.empty((len(subjects), 3, ROIS, ROIS), dtype=np.uint8)
            labels = np.empty(len(subjects), dtype=np.int64)
            for i, subject in enumerate(subjects):
                node = fh["patients"][subject]
                if "cc200" not in node:
                    raise UserError(f"{hdf5}: subject {subject} has no cc200 dataset")
                vector = np.asarray(node["cc200"][()]).reshape(-1)
                if vector.size != ROIS * (ROIS - 1) // 2:
                    raise UserError(f"{hdf5}: subject {subject} cc200 has {vector.size} values, expected {ROIS * (ROIS - 1) // 2}")
                if subject not in groups:
                    raise UserError(f"{hdf5}: subject {subject} has no row in {table}")
                if groups[subject] not in DX_TO_LABEL:
                    raise UserError(
                        f"{table}: subject {subject} has DX_GROUP {groups[subject]}, outside the classes 1 (ASD) and 2 (control)"
                    )
                images[i] = connectivity_image(np.nan_to_num(vector))
                labels[i] = DX_TO_LABEL[groups[subject]]
    except OSError as exc:
        raise UserError(f"cannot read {hdf5}: {exc}") from exc
    if not subjects:
        raise UserError(f"{hdf5} holds no subjects")
    return torch.from_numpy(images), torch.from_numpy(labels), subjects


def abide_prompt_mask() -> torch.Tensor:
    """bool [200, 200]: the diagonal and lower triangle, which carry no data and the prompt may write."""
    return torch.tril(torch.ones(ROIS, ROIS, dtype=torch.bool))


@register_dataset(
    "abide",
    image_size=ROIS,
    batch_size=64,
    description="ABIDE I autism fMRI, CC200 connectivity matrices (Di Martino et al., 2014)",
    layout=LAYOUT,
    stored_size=ROIS,
)
def load_abide(request: DataRequest) -> DatasetSplits:
    folder = request.root / "abide"
    missing = [name for name in (HDF5_FILE, PHENOTYPE_FILE) if not (folder / name).is_file()]
    if missing:
        raise missing_data_error("abide", f"{LAYOUT} (missing: {', '.join(missing)})", request.root, HOW)
    if request.image_size != ROIS:
        raise UserError(f"abide matrices are {ROIS}x{ROIS}; --image-size must be {ROIS} for this dataset")
    images, labels, _ = read_abide(folder)
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    data = ImageTensorSet(images, labels)
    return DatasetSplits(
        train=data.take(train_idx), test=data.take(test_idx), class_names=list(CLASS_NAMES), prompt_mask=abide_prompt_mask()
    )
