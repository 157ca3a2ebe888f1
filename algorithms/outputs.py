"""What the engine writes during a run, as an interface: the runner's run folder implements it.

The engine decides *what* is saved and when (checkpoints, metrics, mappings, scalars, the
per-epoch prediction counts); where and how it lands on disk is :class:`runner.run_dir.RunDir`'s
business. Keeping the interface here lets the engine run without knowing about folders.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

CHECKPOINT = "ckpt.pth"  # the latest epoch: model, optimizer, schedule, history (``--resume``)
BEST = "best.pth"  # the epoch with the best test accuracy so far (the paper's protocol)


@dataclass
class PredictionCounts:
    """``counts[s, t]``: test images of target class ``t`` predicted (top-1) as source class ``s``."""

    epoch: int
    counts: np.ndarray  # [S, K] int64
    mapped: list[int] | None  # source index per target class
    source_names: list[str]
    target_names: list[str]


def mapped_sources(label_mapping: torch.nn.Module, num_source: int, num_target: int) -> list[int] | None:
    """The source index each target class reads, for one-to-one and identity mappings."""
    mapping = getattr(label_mapping, "mapping", None)
    if isinstance(mapping, torch.Tensor) and mapping.dim() == 1 and mapping.numel() == num_target:
        return [int(s) for s in mapping.tolist()]
    if num_source == num_target and not any(True for _ in label_mapping.parameters()):
        return list(range(num_target))  # identity (linear probing, fine-tuning)
    return None


class RunOutputs(Protocol):
    """The files and logs of one run; every writer is a no-op where ``enabled`` is False (other ranks)."""

    enabled: bool

    def save(self, name: str, state: dict) -> None: ...

    def load(self, name: str) -> dict: ...

    def location(self, name: str) -> str: ...  # where ``name`` lives, for messages

    def write_json(self, name: str, obj: Any) -> None: ...

    def write_metrics(self, history: list[dict]) -> None: ...

    def write_mapping(self, epoch: int, description: dict) -> None: ...

    def start_logging(self, first_epoch: int) -> None: ...

    def log_scalars(self, epoch: int, scalars: dict[str, float | None]) -> None: ...

    def write_snapshots(self, model: torch.nn.Module, epoch: int, epochs: int, counts: PredictionCounts | None) -> None: ...

    def close(self) -> None: ...
