"""Files written whole or not at all, and checkpoints that carry a checksum of their bytes.

Every file is written to a temporary file in the same folder, flushed, then renamed over the
old one, so a process killed at any moment leaves the previous complete version behind.

A checkpoint is what :func:`torch.save` writes, a zip archive, with the SHA-256 of its bytes as
the archive's comment (the zip format's own trailing field, which every zip reader, ``torch.load``
included, skips). The checksum lives inside the one file, so it is written by the same atomic
rename (a sidecar file could be left from another version by a kill between two renames) and
travels with every copy of the file. :func:`load_checkpoint` recomputes it: flipped bits are
refused, naming the file, where unpickling alone might load them silently. Saving a new latest
checkpoint keeps the one it replaces, if it verifies, as ``<name>.prev.pth``, and the refusal
says how to continue from that one. Checkpoints written before checksums load with one note.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from common.errors import UserError


def _file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask (mkstemp uses 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` whole or not at all; an :class:`OSError` names ``path``
    (not the temporary file) and leaves the previous ``path`` untouched."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass  # gone already, or the file system refuses (read-only): nothing more to do


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


# the zip archive's comment of a checkpoint: this mark, then the hex SHA-256 of every byte before
# the comment's two-byte length field
CHECKSUM_MARK = b"vp-sha256:"
_COMMENT = len(CHECKSUM_MARK) + 64
_END_OF_ZIP = b"PK\x05\x06"  # the signature of the zip format's end-of-central-directory record (22 bytes + comment)
_unverified_noted: set[str] = set()


def sealed(payload: bytes) -> bytes:
    """``payload`` (a :func:`torch.save` zip archive, no comment) with its checksum as the archive's comment."""
    if payload[-22:-18] != _END_OF_ZIP or payload[-2:] != b"\0\0":
        raise ValueError("not a zip archive without a comment: cannot seal it")
    body = payload[:-2]
    return body + struct.pack("<H", _COMMENT) + CHECKSUM_MARK + hashlib.sha256(body).hexdigest().encode()


def checksum_matches(data: bytes) -> bool | None:
    """Whether the bytes of a checkpoint file match the checksum sealed into them; None when the
    file carries none (written before checksums, or not by this project)."""
    end = len(data) - _COMMENT - 22
    if end < 0 or data[end : end + 4] != _END_OF_ZIP or data[-_COMMENT - 2 : -_COMMENT] != struct.pack("<H", _COMMENT):
        return None
    return data[-_COMMENT:] == CHECKSUM_MARK + hashlib.sha256(data[: -_COMMENT - 2]).hexdigest().encode()


def previous_checkpoint(path: Path) -> Path:
    """Where the checkpoint ``path`` replaced is kept: ``ckpt.pth`` -> ``ckpt.prev.pth``."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(path: Path, state: dict, keep_previous: bool = False) -> None:
    """Write ``state`` atomically with its checksum; with ``keep_previous``, the checkpoint it replaces
    is kept as :func:`previous_checkpoint` first, unless that one fails its own checksum."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    if keep_previous and path.is_file():
        _keep_previous(path)
    atomic_write_bytes(path, sealed(buffer.getvalue()))


def _keep_previous(path: Path) -> None:
    """``path`` becomes ``ckpt.prev.pth`` too (a hard link, else a copy), so that ``path`` exists at every moment."""
    data = path.read_bytes()
    if checksum_matches(data) is False:  # damaged on disk since it was written: the older previous one stays
        print(f"warning: {path} no longer matches its checksum; {previous_checkpoint(path)} is kept as the previous checkpoint", file=sys.stderr)
        return
    previous = previous_checkpoint(path)
    link = path.with_name(f".{previous.name}.link")
    try:
        link.unlink(missing_ok=True)
        os.link(path, link)
        os.replace(link, previous)
    except OSError:
        link.unlink(missing_ok=True)
        atomic_write_bytes(previous, data)  # a file system without hard links


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; a checksum mismatch or any damage is a
    one-line error naming the file (and, for a damaged latest checkpoint, how to go back to the previous one)."""
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from exc
    verified = checksum_matches(data)
    if verified is False:
        raise UserError(f"checkpoint {path} is corrupt: its bytes do not match the checksum written with them; {_recovery(path)}")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UserError(f"checkpoint {path} is unreadable or corrupt ({type(exc).__name__}: {exc}); {_recovery(path)}") from exc
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise UserError(f"checkpoint {path} was not written by this project (no model state / epoch)")
    if verified is None and str(path) not in _unverified_noted:
        _unverified_noted.add(str(path))
        if os.environ.get("RANK", "0") == "0":
            print(f"note: checkpoint {path} has no checksum (written before checksums were added): loaded unverified", flush=True)
    return state


def _recovery(path: Path) -> str:
    """How to continue after ``path`` turned out damaged: from the previous checkpoint, if it verifies."""
    previous = previous_checkpoint(path)
    try:
        good = previous.is_file() and checksum_matches(previous.read_bytes()) is not False
    except OSError:
        good = False
    if not good:
        return f"no verified previous checkpoint is kept ({previous.name}): restore the file from a copy, or start the run again with --overwrite"
    return f"the previous checkpoint verifies: continue from it with `mv {shlex.quote(str(previous))} {shlex.quote(str(path))}` and the same command with --resume"
