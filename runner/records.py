"""One reader of run folders: every tool (tables, figures, sweeps, the search, the comparison) reads runs here.

A run folder (:mod:`runner.run_dir`) holds ``config.json`` (the resolved settings), ``metrics.jsonl``
(one row per finished epoch, rewritten atomically), ``results.json`` (written once the run ends),
``ckpt.pth`` (the latest checkpoint) and, while a process writes it, a lock beside it
(:mod:`runner.run_lock`). A run's status is read from these alone:

- ``finished``: ``results.json`` for the epochs the config asks for;
- ``running``: a live process holds the folder's lock;
- ``stopped``: a checkpoint and no results, nobody writing: ``--resume`` continues it (a run stopped
  by a signal, a killed one, or one that failed after its first checkpoint: the folder cannot tell
  these apart, and each is continued the same way);
- ``failed``: neither results nor a checkpoint, nobody writing (killed or failed before its first
  checkpoint); ``new``: no folder at all.

The record exposes the files as they are (every key of ``results.json`` and of each metrics row),
so a key the engine adds is there without a change here.
"""
from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

FINISHED, RUNNING, STOPPED, FAILED, NEW = "finished", "running", "stopped", "failed", "new"
STATUSES = (FINISHED, RUNNING, STOPPED, FAILED, NEW)
CONFIG, METRICS, RESULTS, CHECKPOINT = "config.json", "metrics.jsonl", "results.json", "ckpt.pth"
# what makes a run smaller than its protocol: (config key, how a table names it)
SUBSET_KEYS = (("max_train_samples", "train"), ("max_test_samples", "test"), ("train_fraction", "fraction"), ("shots", "shots"))


def read_json(path: Path) -> Any | None:
    """A JSON file's content; None if missing or unreadable (a file being replaced is never half-read: writes are atomic)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_metrics(run_dir: Path) -> list[dict]:
    """``metrics.jsonl``'s rows, in order; the rows before an unreadable line."""
    try:
        text = (Path(run_dir) / METRICS).read_text()
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            break
    return rows


def lock_path(run_dir: Path) -> Path:
    """The run lock's file, beside the folder (:class:`runner.run_lock.RunLock`)."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


def lock_held(run_dir: Path) -> bool:
    """Whether a live process holds the run folder's lock (the operating system drops it when that process ends)."""
    try:
        fd = os.open(lock_path(run_dir), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we took
    return False


def run_status(run_dir: Path, epochs: int | None = None) -> str:
    """The status of the run in ``run_dir`` (see the module docstring); ``epochs``: the budget it must have finished."""
    run_dir = Path(run_dir)
    results = read_json(run_dir / RESULTS)
    if isinstance(results, dict) and (epochs is None or results.get("epochs") == epochs):
        return FINISHED
    if lock_held(run_dir):
        return RUNNING
    if (run_dir / CHECKPOINT).is_file():
        return STOPPED
    return FAILED if run_dir.is_dir() else NEW


@dataclass
class RunRecord:
    """One run folder as read now. ``config`` is the run's settings (``RunConfig.to_dict``), ``written``
    the whole ``config.json`` (with ``resolved`` and ``data``); both empty when it has none."""

    path: Path
    written: dict = field(default_factory=dict)

    @property
    def config(self) -> dict:
        return self.written.get("config") or {}

    @property
    def resolved(self) -> dict:
        return self.written.get("resolved") or {}

    @property
    def machine(self) -> str:
        """What the run computed on, in one line (:func:`machine_label`); ``""`` if not recorded."""
        return machine_label(self.written.get("hardware") or {})

    @property
    def method(self) -> str:
        return self.config.get("method", "")

    @property
    def dataset(self) -> str:
        return self.config.get("dataset", "")

    @property
    def network(self) -> str:
        return self.config.get("network", "")

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def epochs(self) -> int | None:
        return int(self.config["epochs"]) if "epochs" in self.config else None

    @cached_property
    def status(self) -> str:
        return run_status(self.path, self.epochs)

    @cached_property
    def results(self) -> dict | None:
        """``results.json`` of a finished run (every key the engine wrote), else None."""
        found = read_json(self.path / RESULTS)
        return found if isinstance(found, dict) and self.status == FINISHED else None

    @cached_property
    def metrics(self) -> list[dict]:
        """``metrics.jsonl``'s rows (every key of each epoch)."""
        return read_metrics(self.path)

    @property
    def epochs_done(self) -> int:
        return self.epochs or 0 if self.status == FINISHED else len(self.metrics)

    def subset(self) -> dict[str, Any]:
        """The flags that made this run read less data than the dataset holds: {config key: value}."""
        return {key: self.config[key] for key, _ in SUBSET_KEYS if self.config.get(key) not in (None, 1.0, 1)}

    def differences(self, epochs: int | None = None) -> list[str]:
        """How this run departs from a protocol of ``epochs`` epochs on the full data: short notes (``train 128``, ``1/5 epochs``)."""
        names = dict(SUBSET_KEYS)
        notes = [f"{names[key]} {value:g}" if isinstance(value, float) else f"{names[key]} {value}" for key, value in self.subset().items()]
        if epochs is not None and self.epochs is not None and self.epochs != epochs:
            notes.append(f"{self.epochs}/{epochs} epochs")
        return notes


def machine_label(recorded: dict) -> str:
    """A run's ``hardware`` record (:func:`runner.provenance.hardware`) in one line (``""`` for a run recorded before there was one):
    the GPU on CUDA, else the CPU with its kernels' instruction set and threads. Times, and the
    low-order bits of results, compare only between runs with the same label."""
    if not recorded:
        return ""
    if recorded.get("gpu"):
        return str(recorded["gpu"])
    return f"{recorded.get('cpu', '?')} ({recorded.get('cpu_capability', '?')}, {recorded.get('threads', '?')} threads)"


def read_run(path: Path) -> RunRecord | None:
    """The run in ``path``; None if it has no readable ``config.json``."""
    written = read_json(Path(path) / CONFIG)
    if not isinstance(written, dict):
        return None
    return RunRecord(Path(path), written)


def find_runs(root: Path) -> list[RunRecord]:
    """Every run folder below ``root`` (a folder holding ``config.json`` with the run's settings), in path order.
    Hidden folders (a run that ``--overwrite`` is replacing) are left out."""
    root = Path(root)
    found = [p for p in sorted(root.rglob(CONFIG)) if not any(part.startswith(".") for part in p.relative_to(root).parts)]
    runs = [read_run(p.parent) for p in found]
    return [r for r in runs if r is not None and r.config]


def read_finished(run_dir: Path, epochs: int | None = None) -> dict | None:
    """``results.json`` of the run in ``run_dir`` when it is finished (for ``epochs`` if given), else None."""
    return read_json(Path(run_dir) / RESULTS) if run_status(run_dir, epochs) == FINISHED else None
