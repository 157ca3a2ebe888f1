"""Fetch a dataset through torchvision's own downloader, turning network failures into one line."""
from __future__ import annotations

from pathlib import Path

from common.errors import UserError


def download_with_torchvision(class_name: str, root: Path, name: str, splits: tuple[dict, ...]) -> None:
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, class_name)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for kwargs in splits:
            dataset_class(str(root), download=True, **kwargs)
    except Exception as exc:  # network errors come as URLError, OSError, RuntimeError, ...
        raise UserError(
            f"dataset {name!r} is missing under {root} and could not be downloaded ({type(exc).__name__}: {exc}); "
            f"place the files there by hand (see README, 'Datasets'), or set VP_DOWNLOAD=0 to skip downloading"
        ) from exc
