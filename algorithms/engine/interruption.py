"""Stopping inside an epoch and continuing exactly: what an epoch in progress must remember.

When the run is asked to stop (a cluster's SIGTERM or SIGUSR1 before preemption or the time
limit), the loop finishes the current optimizer step and writes a checkpoint holding, besides
the usual state, an :class:`EpochProgress`: how many steps of the epoch are done, the epoch's
running sums, the augmentation generator and the global random state, the learning rate the
epoch began with (its metric row's: the schedule steps within the epoch), and the hooks' partial
statistics, then raises :class:`common.preemption.Stopped`. ``--resume`` then skips the done steps (the epoch's order depends only on the seed
and the epoch) and continues as if never stopped: on a CPU, bit for bit.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from common import preemption
from data.loader import BatchLoader


@dataclass
class EpochProgress:
    """An epoch stopped after ``steps_done`` optimizer steps."""

    epoch: int  # 0-based epoch in progress
    steps_done: int
    sums: torch.Tensor  # [loss sum, correct, samples seen, top-5 correct] over the done steps (this rank; 3 before top-5 existed)
    augment_state: torch.Tensor  # the epoch's augmentation generator after the done steps
    rng_state: torch.Tensor  # torch's global CPU generator
    entries: dict[str, Any] = field(default_factory=dict)  # the metric-row entries of the epoch's hooks
    hook_seconds: float = 0.0  # time the epoch's hooks took before the stop
    lr: float | None = None  # the learning rate the epoch began with, its metric row's (None in older checkpoints)

    def state_dict(self) -> dict[str, Any]:
        state = asdict(self)
        state["sums"] = self.sums.detach().cpu()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EpochProgress:
        return cls(**state)


def stoppable_pass(batches: Iterable, loader: BatchLoader, desc: str) -> Iterator:
    """The batches of a no-grad pass over ``loader`` (the mapping's statistics, evaluation): a stop
    request ends the run before the next batch, every rank at the same one
    (:func:`common.preemption.stoppable`). Nothing of the pass is kept: the run's last checkpoint
    precedes it, so ``--resume`` redoes the pass from its start, exactly."""
    return preemption.stoppable(batches, f"during the {desc} pass", batches_on_every_rank(loader))


def batches_on_every_rank(loader: BatchLoader) -> int:
    """How many batches each rank draws at least: an evaluation loader does not pad, so shards of
    ``N`` samples over ``W`` ranks hold ``N // W`` or one more."""
    if loader.world_size == 1:
        return len(loader)
    return math.ceil(loader.num_samples // loader.world_size / loader.batch_size)
