"""GTSRB traffic signs in torchvision's layout, resized to 32x32 as in the ILM-VP paper."""
from __future__ import annotations

import csv

from common.errors import UserError
from data.image_io import IMAGE_EXTENSIONS
from data.registry import DataRequest, DatasetSplits, missing_data_error, register_dataset
from data.tensors import FileImageList
from data.torchvision_download import download_with_torchvision

# The 43 classes of the German Traffic Sign Recognition Benchmark (Stallkamp et al., 2011), by class id.
GTSRB_CLASSES = [
    "speed limit 20", "speed limit 30", "speed limit 50", "speed limit 60", "speed limit 70",
    "speed limit 80", "end of speed limit 80", "speed limit 100", "speed limit 120", "no passing",
    "no passing for vehicles over 3.5 tons", "right of way at the next intersection", "priority road",
    "yield", "stop", "no vehicles", "vehicles over 3.5 tons prohibited", "no entry", "general caution",
    "dangerous curve to the left", "dangerous curve to the right", "double curve", "bumpy road",
    "slippery road", "road narrows on the right", "road work", "traffic signals", "pedestrians",
    "children crossing", "bicycles crossing", "beware of ice or snow", "wild animals crossing",
    "end of all speed and passing limits", "turn right ahead", "turn left ahead", "ahead only",
    "go straight or right", "go straight or left", "keep right", "keep left", "roundabout mandatory",
    "end of no passing", "end of no passing by vehicles over 3.5 tons",
]  # fmt: skip

LAYOUT = "gtsrb/GTSRB/Training/<5-digit class id>/*.ppm, gtsrb/GTSRB/Final_Test/Images/*.ppm, gtsrb/GT-final_test.csv"


@register_dataset(
    "gtsrb",
    image_size=32,
    batch_size=128,
    description="German Traffic Sign Recognition Benchmark (Stallkamp et al., 2011)",
    layout=LAYOUT,
)
def load_gtsrb(request: DataRequest) -> DatasetSplits:
    base = request.root / "gtsrb"
    train_dir, test_dir, test_csv = base / "GTSRB" / "Training", base / "GTSRB" / "Final_Test" / "Images", base / "GT-final_test.csv"
    if not (train_dir.is_dir() and test_dir.is_dir() and test_csv.is_file()) and request.download:
        download_with_torchvision("GTSRB", request.root, "gtsrb", splits=({"split": "train"}, {"split": "test"}))
    if not (train_dir.is_dir() and test_dir.is_dir() and test_csv.is_file()):
        raise missing_data_error(
            "gtsrb", LAYOUT, request.root, "torchvision.datasets.GTSRB(root, download=True) creates exactly this layout"
        )
    size = (request.image_size, request.image_size)
    paths, labels = [], []
    for class_dir in sorted(p for p in train_dir.iterdir() if p.is_dir()):
        files = sorted(f for f in class_dir.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        paths.extend(files)
        labels.extend([int(class_dir.name)] * len(files))
    test_paths, test_labels = [], []
    with open(test_csv, newline="") as fh:
        for row in csv.DictReader(fh, delimiter=";"):
            try:
                test_paths.append(test_dir / row["Filename"])
                test_labels.append(int(row["ClassId"]))
            except (KeyError, ValueError) as exc:
                raise UserError(f"{test_csv}: bad row {row} ({exc})") from exc
    return DatasetSplits(
        train=FileImageList(paths, labels, size),
        test=FileImageList(test_paths, test_labels, size),
        class_names=list(GTSRB_CLASSES),
    )
