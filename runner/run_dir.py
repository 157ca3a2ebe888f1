"""Everything a run writes: config, metrics, mappings, TensorBoard scalars, checkpoints, results.

Files are replaced atomically (written to a temporary file in the same folder, then renamed),
so a run killed at any moment leaves the previous complete version of every file behind.

A run folder is written by one process at a time and exists only for runs that got somewhere:

- :meth:`RunDir.prepare` checks the folder may be used as asked (``--resume`` needs a
  checkpoint, a new run an empty place or ``--overwrite``) and, on the writing rank, locks it
  (:mod:`runner.run_lock`) for the whole run. It writes nothing.
- The folder is created by the run's first write, which comes after the data, network and
  weights have all been loaded. With ``--overwrite`` that first write moves the old run aside
  (``.<run id>.previous`` beside the folder); the old run is deleted once the new one has
  written its first checkpoint (``ckpt.pth``, or ``results.json`` for a method without
  epochs) and put back by :meth:`RunDir.abandon` if it fails before. A process killed in between
  leaves both behind; the next start in that folder settles it the same way.
- :meth:`RunDir.abandon` also removes a folder the failed run created before its first
  checkpoint, so runs that fail early leave no half-empty folders. What a run killed before its
  first checkpoint left behind is cleared by the next run's first write (:data:`LEFTOVERS`).
- A failed write (disk full, permission lost, file system gone read-only) is one
  :class:`UserError` naming the file and the cause; the files written before it are intact.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from algorithms.engine.checkpoint import differing_settings
from algorithms.outputs import BEST, CHECKPOINT, PredictionCounts
from algorithms.settings import DATA_LOCATION, PRECISION_SETTINGS, RunConfig, arithmetic_of, result_settings
from common.errors import UserError
from common.files import atomic_write_bytes, atomic_write_json, load_checkpoint, previous_checkpoint, save_checkpoint
from runner.run_lock import RunLock
from runner.snapshots import COUNTS_DIR, PROMPTS_DIR, write_epoch_snapshots

__all__ = ["BEST", "CHECKPOINT", "RESULTS", "NoRunError", "RunDir", "run_folder", "runs_on_other_data", "similar_runs"]

RESULTS = "results.json"
NEW, RESUME, EVAL = "new", "resume", "eval"
# what a run writes before its first checkpoint: cleared from a folder that holds no run before
# a new run starts there, so that its files never mix with those of a run killed early
LEFTOVERS = ("config.json", "metrics.jsonl", BEST, previous_checkpoint(Path(CHECKPOINT)).name, "eval.json", "probe.pth", "tensorboard", "mappings", PROMPTS_DIR, COUNTS_DIR)


class NoRunError(UserError):
    """``--resume`` or ``--eval-only`` found no checkpoint in the run folder."""


def holds_run(folder: Path) -> bool:
    """A folder holds a run once it has a checkpoint or results (what ``--overwrite`` guards)."""
    return (folder / CHECKPOINT).is_file() or (folder / RESULTS).is_file()


class RunDir:
    """One run's output folder and the writers for each of its files (the engine's :class:`~algorithms.outputs.RunOutputs`)."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled  # False on non-zero ranks: nothing is written
        self._tb = None
        self._mode: str | None = None  # NEW, RESUME or EVAL once prepared
        self._replace = False  # --overwrite of a run: moved aside at the first write
        self._started = False  # the first write happened
        self._committed = False  # the first checkpoint (or results.json) is written
        self._created: list[Path] = []  # folders this process made, outermost first
        self._lock: RunLock | None = None

    @property
    def _previous(self) -> Path:
        """Where ``--overwrite`` keeps the old run until the new one has its first checkpoint."""
        return self.path.parent / f".{self.path.name}.previous"

    @property
    def _lock_path(self) -> Path:
        return self.path.parent / f".{self.path.name}.lock"

    # -- lifecycle -----------------------------------------------------------------------------
    def prepare(self, *, resume: bool, overwrite: bool, eval_only: bool) -> None:
        """Check the folder may be used as asked; on the writing rank, lock it. Writes nothing."""
        mode = RESUME if resume else EVAL if eval_only else NEW
        if not self.enabled:  # other ranks: the same verdicts, read-only
            self._check(mode, overwrite, self._settled_folder())
            self._mode = mode
            return
        try:
            try:
                self._make_folder(self.path.parent)
                self._lock = RunLock.acquire(self._lock_path, self.path)
            except OSError as exc:
                raise UserError(f"cannot write to results folder {self.path}: {exc.strerror or exc}") from exc
            self._settle_interrupted_overwrite()
            replace = self._check(mode, overwrite, self.path)
            self._probe_writable(self.path.parent)
            if self.path.is_dir() and not replace:
                self._probe_writable(self.path)
        except BaseException:
            self.release()
            raise
        self._mode, self._replace = mode, replace

    def _check(self, mode: str, overwrite: bool, folder: Path) -> bool:
        """Refuse what cannot be done in ``folder``; returns whether a new run replaces an old one."""
        if mode == RESUME and not (folder / CHECKPOINT).is_file():
            raise NoRunError(f"nothing to resume in {self.path} (no {CHECKPOINT})")
        if mode == EVAL and not ((folder / BEST).is_file() or (folder / CHECKPOINT).is_file()):
            raise NoRunError(f"nothing to evaluate in {self.path} (no {BEST} or {CHECKPOINT})")
        if mode != NEW or not holds_run(folder):
            return False
        if not overwrite:
            raise UserError(
                f"run folder {self.path} already holds a run; pass --resume to continue it, "
                f"--overwrite to start again (the old run is kept until the new one's first checkpoint), "
                f"or --run-name NAME for a new folder"
            )
        return True

    def holds_checkpoint(self) -> bool:
        """Whether the folder (as it will be once an interrupted ``--overwrite`` is settled) has a run to continue."""
        return (self._settled_folder() / CHECKPOINT).is_file()

    def saved_identity(self) -> dict[str, Any] | None:
        """The identity (:meth:`RunConfig.identity`) of the run in the folder, from its ``config.json``; None if unreadable."""
        try:
            written = json.loads((self._settled_folder() / "config.json").read_text())
            return RunConfig.from_dict(written["config"]).identity()
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _settled_folder(self) -> Path:
        """The folder as the writing rank will find it after settling an interrupted overwrite."""
        return self._previous if self._previous.is_dir() and not holds_run(self.path) else self.path

    def _settle_interrupted_overwrite(self) -> None:
        """An overwrite killed between moving the old run aside and the new run's first
        checkpoint: keep the new run if it got that far, else put the old one back."""
        previous = self._previous
        if not previous.exists():
            return
        try:
            if holds_run(self.path):
                shutil.rmtree(previous)
            else:
                if self.path.exists():
                    shutil.rmtree(self.path)
                os.rename(previous, self.path)
        except OSError as exc:
            raise UserError(f"cannot settle the interrupted overwrite of {self.path} ({previous}): {exc.strerror or exc}") from exc

    def _probe_writable(self, folder: Path) -> None:
        try:
            fd, probe = tempfile.mkstemp(prefix=".write_test.", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise UserError(f"cannot write to results folder {self.path}: {exc.strerror or exc}") from exc

    def _make_folder(self, folder: Path) -> None:
        """``mkdir -p``, remembering the folders this process created."""
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            try:
                path.mkdir()
                self._created.append(path)
            except FileExistsError:
                if not path.is_dir():
                    raise

    def _start(self) -> None:
        """Before the first write: move a replaced run aside, or clear what a run killed before
        its first checkpoint left in the folder; create the folder."""
        if self._started:
            return
        if self._replace:
            os.rename(self.path, self._previous)
        elif self._mode == NEW and self.path.is_dir():
            for name in LEFTOVERS:  # other files (a launcher's log) stay
                leftover = self.path / name
                if leftover.is_dir():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink(missing_ok=True)
        self._make_folder(self.path)
        self._started = True

    def _commit(self) -> None:
        """The first checkpoint is on disk: the run replaced by ``--overwrite`` can go."""
        if self._committed:
            return
        self._committed = True
        if self._replace:
            shutil.rmtree(self._previous, ignore_errors=True)  # what is left goes at the next start

    def abandon(self) -> str | None:
        """After a failure: undo a new run that has no checkpoint yet (put a replaced run back,
        remove a folder this run created). Returns a note if that was impossible."""
        if not self.enabled or self._mode != NEW or not self._started or self._committed:
            return None
        self._close_quietly()
        try:
            if self._replace:
                if self.path.exists():
                    shutil.rmtree(self.path)
                os.rename(self._previous, self.path)
            elif self.path in self._created:
                shutil.rmtree(self.path)
        except OSError as exc:
            if self._replace:
                return f"the replaced run is kept in {self._previous} ({exc.strerror}) and put back by the next start in this folder"
            return f"could not remove {self.path} ({exc.strerror})"
        return None

    def release(self) -> None:
        """Unlock the folder and remove the empty parent folders this process created."""
        self._close_quietly()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        for folder in reversed(self._created):
            try:
                folder.rmdir()  # only if empty; never another run's folder
            except FileNotFoundError:
                continue  # an abandoned run folder, removed already
            except OSError:
                break
        self._created = []

    def close(self) -> None:
        if self._tb is not None:
            with self._writing(self.path / "tensorboard"):
                tb, self._tb = self._tb, None
                tb.close()

    def _close_quietly(self) -> None:
        try:
            self.close()
        except UserError:
            pass

    # -- files ---------------------------------------------------------------------------------
    @contextmanager
    def _writing(self, path: Path) -> Iterator[None]:
        """Create the folder on first use; turn an OS error into one line naming the file."""
        try:
            self._start()
            yield
        except OSError as exc:
            cause = exc.strerror or str(exc) or type(exc).__name__
            raise UserError(f"cannot write {exc.filename or path}: {cause}; {self._failure_outcome()}") from exc

    def _failure_outcome(self) -> str:
        if self._mode == EVAL:
            return "the run folder is otherwise unchanged"
        if self._committed or self._mode == RESUME:
            return f"{CHECKPOINT} and every file written before are intact: free space (or fix the folder) and continue with --resume"
        if self._replace:
            return "the run had no checkpoint yet and is abandoned; the run it was replacing is put back"
        return "the run had no checkpoint yet and is abandoned"

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, obj: Any) -> None:
        if self.enabled:
            with self._writing(self.path / name):
                atomic_write_json(self.path / name, obj)
            if name == RESULTS:
                self._commit()

    def write_metrics(self, history: list[dict]) -> None:
        """``metrics.jsonl``, one line per finished epoch, rewritten whole from the checkpointed history."""
        if self.enabled:
            text = "".join(json.dumps(row, default=str) + "\n" for row in history)
            with self._writing(self.path / "metrics.jsonl"):
                atomic_write_bytes(self.path / "metrics.jsonl", text.encode())

    def write_mapping(self, epoch: int, description: dict) -> None:
        if self.enabled and description:  # an identity mapping has nothing to record: no folder
            path = self.path / "mappings" / f"epoch_{epoch:03d}.json"
            with self._writing(path):
                path.parent.mkdir(exist_ok=True)
                atomic_write_json(path, description)

    def save(self, name: str, state: dict) -> None:
        if self.enabled:
            with self._writing(self.path / name):
                save_checkpoint(self.path / name, state, keep_previous=name == CHECKPOINT)
            if name == CHECKPOINT:
                self._commit()

    def load(self, name: str) -> dict:
        return load_checkpoint(self.path / name)

    def location(self, name: str) -> str:
        return str(self.path / name)

    def write_snapshots(self, model: torch.nn.Module, epoch: int, epochs: int, counts: PredictionCounts | None) -> None:
        if self.enabled:
            with self._writing(self.path):
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

            with self._writing(self.path / "tensorboard"):
                self._tb = SummaryWriter(log_dir=str(self.path / "tensorboard"), purge_step=purge_step)
        return self._tb

    def log_scalars(self, epoch: int, scalars: dict[str, float | None]) -> None:
        writer = self.tensorboard()
        if writer is None:
            return
        with self._writing(self.path / "tensorboard"):
            for key, value in scalars.items():
                if value is not None:
                    writer.add_scalar(key, value, epoch)
            writer.flush()


def run_folder(config: RunConfig) -> Path:
    """The run's folder, :meth:`RunConfig.run_path`, checked to stay inside the results tree; where
    that holds no run but the folder named before the result-neutral settings left the hash does (a
    run made with ``--eval-batch-size 8``, say), that older folder, so the run is still found."""
    path = config.run_path()
    if config.run_name:
        check_run_name(config.run_name)
        return path
    legacy = path.with_name(f"seed{config.seed}-{config.config_hash(legacy=True)}")
    return legacy if legacy != path and not holds_run(path) and holds_run(legacy) else path


def check_run_name(name: str) -> None:
    """A ``--run-name`` is one folder name inside ``<results>/<method>/<dataset>/<network>/``: never
    a path that leaves it (``../x``, ``/abs``) or a hidden name (the lock and overwrite files beside runs)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise UserError(
            f"--run-name {name!r} must be one folder name inside the results tree (no '/', not starting with '.'),"
            " for example --run-name lr0.1"
        )


def similar_runs(path: Path, identity: dict[str, Any]) -> list[tuple[Path, list[str]]]:
    """Runs beside ``path`` of the same seed and data that hold a checkpoint or results but other
    settings: ``(folder, the settings that differ)`` (what ``--resume auto`` names before starting afresh)."""
    found = []
    for saved in sorted(path.parent.glob(f"seed{identity.get('seed')}-*/config.json")):
        folder = saved.parent
        if folder == path or not holds_run(folder):
            continue
        try:
            other = RunConfig.from_dict(json.loads(saved.read_text())["config"]).identity()
        except (OSError, ValueError, KeyError, TypeError):
            continue
        differing = differing_settings(other, identity)
        if other.get(DATA_LOCATION) == identity.get(DATA_LOCATION) and differing:
            found.append((folder, differing))
    return found


def runs_on_other_data(path: Path, config: dict[str, Any], location: str) -> list[tuple[Path, str]]:
    """Run folders beside ``path`` with the result settings of ``config`` (a ``RunConfig.to_dict``)
    but data read from elsewhere than ``location``: ``(folder, its data location)``."""
    wanted = result_settings(config)
    found = []
    for saved in sorted(path.parent.glob("*/config.json")):
        if saved.parent.name.startswith("."):  # a run moved aside by --overwrite
            continue
        try:
            written = json.loads(saved.read_text())
            other = written["data"]["location"]
            same_settings = result_settings(written["config"]) == wanted
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if same_settings and other != location and saved.parent != path:
            found.append((saved.parent, other))
    return found



def runs_in_other_arithmetic(path: Path, config: dict[str, Any]) -> list[tuple[Path, str]]:
    """Run folders beside ``path`` with the result settings of ``config`` but for the precision they
    were computed in (a CUDA run, looked for on a CPU): ``(folder, its arithmetic)``."""
    wanted = {k: v for k, v in result_settings(config).items() if k not in PRECISION_SETTINGS}
    found = []
    for saved in sorted(path.parent.glob("*/config.json")):
        if saved.parent.name.startswith(".") or saved.parent == path:
            continue
        try:
            written = result_settings(json.loads(saved.read_text())["config"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if {k: v for k, v in written.items() if k not in PRECISION_SETTINGS} == wanted:
            found.append((saved.parent, arithmetic_of(written)))
    return found
