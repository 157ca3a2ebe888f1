"""Everything a run writes: config, metrics, mappings, TensorBoard scalars, checkpoints, results.

Files are replaced atomically (written to a temporary file in the same folder, then renamed),
so a run killed at any moment leaves the previous complete version of every file behind.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from algorithms.outputs import BEST, CHECKPOINT, PredictionCounts
from common.errors import UserError
from common.files import atomic_write_bytes, atomic_write_json, load_checkpoint, save_checkpoint
from runner.snapshots import write_epoch_snapshots

__all__ = ["BEST", "CHECKPOINT", "RunDir"]


class RunDir:
    """One run's output folder and the writers for each of its files (the engine's :class:`~algorithms.outputs.RunOutputs`)."""

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

    def load(self, name: str) -> dict:
        return load_checkpoint(self.path / name)

    def location(self, name: str) -> str:
        return str(self.path / name)

    def write_snapshots(self, model: torch.nn.Module, epoch: int, epochs: int, counts: PredictionCounts | None) -> None:
        write_epoch_snapshots(self, model, epoch, epochs, counts)

    # -- TensorBoard ---------------------------------------------------------------------------
    def start_logging(self, first_epoch: int) -> None:
        """Open TensorBoard; on resume, drop events of epochs that the checkpoint does not contain."""
        self.tensorboard(purge_step=first_epoch + 1 if first_epoch else None)

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
