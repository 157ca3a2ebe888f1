"""DTD-10: ten Describable Textures classes as an image folder, the comparison's second dataset.

``--dataset dtd10`` reads ``<data-path>/dtd10/{train,test}/<class>/*`` at 128 px, so it computes
what ``--dataset folder --data-path <data-path>/dtd10 --image-size 128`` computes (the spelling
of tools/reproduce.py's ``beyond`` preset and tools/search.py); only the run folder differs, named
by the dataset.
"""
from __future__ import annotations

from data.folder import read_image_folder
from data.registry import DataRequest, DatasetSplits, register_dataset

DTD10_FOLDER = "dtd10"


@register_dataset(
    "dtd10",
    image_size=128,
    batch_size=128,  # as ``folder``: the same run through either spelling
    description="DTD-10: ten Describable Textures classes, 72 train and 48 test images each (Cimpoi et al., 2014)",
    layout="dtd10/train/<class>/*, dtd10/test/<class>/*",
)
def load_dtd10(request: DataRequest) -> DatasetSplits:
    return read_image_folder(
        "dtd10", request.root / DTD10_FOLDER, request.image_size,
        "place DTD-10's image folders there (docs/datasets.md, 'DTD-10')",
    )  # fmt: skip
