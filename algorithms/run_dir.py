"""Everything a run writes: config, metrics, mappings, TensorBoard scalars, checkpoints, results.

Files are replaced atomically (written to a temporary file in the same folder, then renamed),
so a run killed at any moment leaves the previous complete version of every file behind.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from algorithms.errors import UserError

CHECKPOINT = "ckpt.pth"
BEST = "best.pth"


def _file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask (mkstemp uses 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; any damage is a one-line error."""
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UserError(f"checkpoint {path} is unreadable or corrupt ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise UserError(f"checkpoint {path} was not written by this project (no model state / epoch)")
    return state


class RunDir:
    """One run's output folder and the writers for each of its files."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled  # False on non-zero ranks: nothing is written
        self._tb = None

    # -- lifecycle -----------------------------------------------------------------------------
    def prepare(self, *, resume: bool, overwrite: bool, eval_only: bool) -> None:
        """Create the folder, refusing to clobber an earlier run unless asked to."""
        has_run = (self.path / CHECKPOINT).exists() or (self.path / "results.json").exists()
        if resume or eval_only:
            if not has_run:
                raise UserError(f"nothing to {'resume' if resume else 'evaluate'} in {self.path} (no {CHECKPOINT})")
        elif has_run and not overwrite:
            raise UserError(
                f"run folder {self.path} already holds a run; pass --resume to continue it, "
                f"--overwrite to start again, or --run-name NAME for a new folder"
            )
        if not self.enabled:
            return
        try:
            if has_run and overwrite and not (resume or eval_only):
                shutil.rmtree(self.path)
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write_test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"cannot write to results folder {self.path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    # -- files ---------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, obj: Any) -> None:
        if self.enabled:
            atomic_write_json(self.path / name, obj)

    def write_metrics(self, history: list[dict]) -> None:
        """``metrics.jsonl``, one line per finished epoch, rewritten whole from the checkpointed history."""
        if self.enabled:
            text = "".join(json.dumps(row, default=str) + "\n" for row in history)
            atomic_write_bytes(self.path / "metrics.jsonl", text.encode())

    def write_mapping(self, epoch: int, description: dict) -> None:
        if self.enabled and description:  # an identity mapping has nothing to record: no folder
            (self.path / "mappings").mkdir(exist_ok=True)
            atomic_write_json(self.path / "mappings" / f"epoch_{epoch:03d}.json", description)

    def save(self, name: str, state: dict) -> None:
        if self.enabled:
            save_checkpoint(self.path / name, state)

    # -- TensorBoard ---------------------------------------------------------------------------
    def tensorboard(self, purge_step: int | None = None):
        if not self.enabled:
            return None
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.path / "tensorboard"), purge_step=purge_step)
        return self._tb

    def log_scalars(self, epoch: int, scalars: dict[str, float | None]) -> None:
        writer = self.tensorboard()
        if writer is None:
            return
        for key, value in scalars.items():
            if value is not None:
                writer.add_scalar(key, value, epoch)
        writer.flush()
