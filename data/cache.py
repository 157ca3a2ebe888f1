"""Decode image files once: small sets in memory, large ones into a memory-mapped ``.npy`` cache.

A cache file holds ``uint8 [N, 3, H, W]`` for one exact list of files at one size and decode mode
(:data:`~data.image_io.DECODE_MODES`). Its name is a hash of every path with its size and
modification time plus the image size and decode mode, so a changed, added or removed file (or
another ``--image-size`` or ``--decode``) selects a different file and the set is
decoded again; an unchanged set is opened in milliseconds by later runs. The file is written
through ordinary writes to ``<name>.partial`` and renamed when complete, so an interrupted
build never leaves a cache that looks valid. Old cache files are never read again once their
sources change; delete the cache folder (``VP_CACHE``, default ``cache/``) to reclaim the space.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import mmap
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

import cfg
from common import preemption, progress
from common.errors import UserError
from data.image_io import decode_images, read_image

# Sets whose decoded size exceeds this are cached on disk and memory-mapped; smaller ones are
# decoded into memory each run (seconds). With train, val and test each below this bound the
# in-memory data of a run stays well below 1 GB.
MEMMAP_MIN_BYTES = 256 * 2**20


def cache_key(paths: Sequence[Path], size: tuple[int, int], decode: str = "squash") -> str:
    """Hash of the image size, the decode mode and every file's path, byte size and modification time."""
    mode = "" if decode == "squash" else f" {decode}"  # squash keys are those written before the modes existed
    digest = hashlib.sha256(f"uint8 NCHW {size[0]}x{size[1]}{mode}\n".encode())
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError as exc:
            raise UserError(f"image file not found: {path}") from exc
        digest.update(f"{os.path.abspath(path)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def cache_file(
    paths: Sequence[Path], size: tuple[int, int], cache_dir: Path | None = None, label: str = "images", decode: str = "squash"
) -> Path:
    folder = Path(cache_dir) if cache_dir is not None else cfg.CACHE_PATH
    return folder / f"{label}-{len(paths)}x3x{size[0]}x{size[1]}-{cache_key(paths, size, decode)}.npy"


def load_images(
    paths: Sequence[Path], size: tuple[int, int], *, label: str = "images", cache_dir: Path | None = None, decode: str = "squash"
) -> torch.Tensor:
    """``uint8 [N, 3, H, W]`` for ``paths``: decoded in memory, or memory-mapped from the cache."""
    nbytes = len(paths) * 3 * size[0] * size[1]
    if nbytes <= MEMMAP_MIN_BYTES:
        return decode_images(paths, size, desc=f"decode {label}", decode=decode)
    path = cache_file(paths, size, cache_dir, label, decode)
    if not path.is_file():
        build_cache(paths, size, path, desc=f"cache {label} ({nbytes / 2**30:.1f} GB)", decode=decode)
    return open_cache(path, (len(paths), 3, size[0], size[1]))


def build_cache(paths: Sequence[Path], size: tuple[int, int], path: Path, desc: str = "cache", decode: str = "squash") -> None:
    """Decode ``paths`` into the ``.npy`` file ``path``, one image at a time (constant memory)."""
    shape = (len(paths), 3, size[0], size[1])
    partial = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": shape})
            for file in preemption.stoppable(progress.bar(paths, desc=desc, unit="img"), f"during {desc}"):  # the partial file goes
                fh.write(np.ascontiguousarray(read_image(file, size, decode).transpose(2, 0, 1)).tobytes())
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UserError(f"cannot write the image cache {path}: {exc}; set VP_CACHE to a writable folder") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def open_cache(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    """Memory-map a cache file copy-on-write (batches read pages on demand; the file is never modified)."""
    try:
        array = np.load(path, mmap_mode="c")
    except (OSError, ValueError) as exc:
        raise UserError(f"image cache {path} is unreadable ({exc}); delete it to rebuild") from exc
    if array.dtype != np.uint8 or array.shape != tuple(shape):
        raise UserError(f"image cache {path} holds {array.dtype} {array.shape}, expected uint8 {shape}; delete it to rebuild")
    images = torch.from_numpy(array)
    _MAPPED[images.untyped_storage().data_ptr()] = images.untyped_storage().nbytes()
    return images


# Storages that are memory-mapped cache files: data pointer -> bytes. Their pages are clean (the
# mapping is copy-on-write and never written), so the process may drop them at any time.
_MAPPED: dict[int, int] = {}
_MADV_DONTNEED = 4


def is_memory_mapped(images: torch.Tensor) -> bool:
    return images.untyped_storage().data_ptr() in _MAPPED


def release_pages(images: torch.Tensor) -> None:
    """Drop this process's resident pages of a memory-mapped cache.

    Pages read from the map count in the process's resident memory until the kernel needs them
    back; an epoch over a 2.5 GB cache would otherwise end with 2.5 GB resident. Later reads fault
    the pages back in from the page cache, so this costs little and changes no data.
    """
    start = images.untyped_storage().data_ptr()
    size = _MAPPED.get(start)
    if not size:
        return
    page = mmap.PAGESIZE
    aligned = start - start % page  # still inside the mapping: it begins at the file's first page
    length = (start + size - aligned + page - 1) // page * page
    _libc().madvise(ctypes.c_void_p(aligned), ctypes.c_size_t(length), _MADV_DONTNEED)


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)
