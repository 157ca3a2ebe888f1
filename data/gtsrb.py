"""GTSRB traffic signs in torchvision's layout, resized to 32x32 as in the ILM-VP paper.

Two lists of class names: :data:`GTSRB_CLASSES`, the signs' descriptive names, used in tables
and mapping files; and :data:`GTSRB_LABEL_MAP`, the names the official ILM-VP code's label map
(``data/const.py``) gives the class ids, which it writes into CLIP's text prompts (after turning
``_`` into spaces: ``20_speed`` -> ``20 speed``). CLIP methods use the latter by default
(``--class-names reference``) and the descriptive ones with ``--class-names readable``.
"""
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

# Class ids 0..42 as named by the label map of the official ILM-VP code (data/const.py).
GTSRB_LABEL_MAP = [
    "20_speed", "30_speed", "50_speed", "60_speed", "70_speed", "80_speed", "80_lifted", "100_speed",
    "120_speed", "no_overtaking_general", "no_overtaking_trucks", "right_of_way_crossing",
    "right_of_way_general", "give_way", "stop", "no_way_general", "no_way_trucks", "no_way_one_way",
    "attention_general", "attention_left_turn", "attention_right_turn", "attention_curvy",
    "attention_bumpers", "attention_slippery", "attention_bottleneck", "attention_construction",
    "attention_traffic_light", "attention_pedestrian", "attention_children", "attention_bikes",
    "attention_snowflake", "attention_deer", "lifted_general", "turn_right", "turn_left",
    "turn_straight", "turn_straight_right", "turn_straight_left", "turn_right_down",
    "turn_left_down", "turn_circle", "lifted_no_overtaking_general", "lifted_no_overtaking_trucks",
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
        text_names=list(GTSRB_LABEL_MAP),
    )
