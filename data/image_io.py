"""Decode image files once into uint8 arrays; every error names the file."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from common import preemption, progress
from common.errors import UserError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")

# How a stored image becomes ``size``: the reference preprocessing of each method family.
#   squash: both sides resized to ``size`` (bilinear, antialiased): torchvision ``Resize((H, W))``,
#           the ILM-VP code's CNN preprocessing (e.g. 128 x 128 for the CoOp datasets).
#   crop:   the shorter side resized to ``size`` (bicubic, antialiased), then the centre
#           ``size`` crop: torchvision ``Resize(S)`` + ``CenterCrop(S)``, CLIP's preprocessing.
DECODE_MODES = ("squash", "crop")


def resize_image(img: Image.Image, size: tuple[int, int], decode: str = "squash") -> Image.Image:
    """``img`` (RGB) brought to ``size`` = (H, W) as ``decode`` says (see :data:`DECODE_MODES`)."""
    if decode == "squash":
        from PIL import Image

        return img if (img.height, img.width) == tuple(size) else img.resize((size[1], size[0]), Image.BILINEAR)
    if decode == "crop":
        import torchvision.transforms.functional as TF
        from torchvision.transforms import InterpolationMode

        if size[0] != size[1]:
            raise ValueError(f"crop decoding makes square images, got size {tuple(size)}")
        # the calls open_clip's image_transform makes (resize_mode "shortest"), on the PIL image
        img = TF.resize(img, [size[0]], interpolation=InterpolationMode.BICUBIC)
        return TF.center_crop(img, [size[0], size[1]])
    raise ValueError(f"unknown decode mode {decode!r}; choose from {', '.join(DECODE_MODES)}")


def read_image(path: Path, size: tuple[int, int] | None, decode: str = "squash") -> np.ndarray:
    """One RGB image as ``uint8 [H, W, 3]``, brought to ``size`` = (H, W) by ``decode`` (None: as stored)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if size is not None:
                img = resize_image(img, size, decode)
            return np.asarray(img, dtype=np.uint8)
    except FileNotFoundError as exc:
        raise UserError(f"image file not found: {path}") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from exc


def decode_images(paths: Sequence[Path], size: tuple[int, int], desc: str = "decode", decode: str = "squash") -> torch.Tensor:
    """Decode files into one ``uint8 [N, 3, H, W]`` tensor (a progress bar for large sets)."""
    out = torch.empty((len(paths), 3, size[0], size[1]), dtype=torch.uint8)
    view = out.numpy()
    for i, path in enumerate(preemption.stoppable(progress.bar(paths, desc=desc, unit="img", enabled=len(paths) >= 2000), f"during {desc}")):
        view[i] = read_image(path, size, decode).transpose(2, 0, 1)
    return out


def list_class_folders(root: Path) -> list[tuple[str, list[Path]]]:
    """``root/<class>/<image>`` as (class folder name, sorted image paths), classes sorted by name."""
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    return [
        (c.name, sorted(f for f in c.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)) for c in classes
    ]


def readable_class_name(folder_name: str) -> str:
    """``Golden_Retriever`` -> ``golden retriever``: the form text prompts and tables expect."""
    return " ".join(folder_name.replace("_", " ").replace("-", " ").lower().split())
