"""The comparison's runs: rows x datasets x networks x seeds under one protocol, as jobs of the sweep (same folders, same launcher)."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from algorithms.methods import FAMILIES, get_method
from common.errors import UserError
from tools.comparison.rows import Row
from tools.sweep.jobs import Job, PlannedJob, ensure_registered, plan
from tools.sweep.presets import BEYOND_DATASETS

# what the protocol sets for every row; a row or the flags after -- cannot change them
PROTOCOL_FLAGS = ("--epochs", "--seed", "--val-fraction", "--results-path", "--data-path", "--dataset", "--resume", "--overwrite", "--run-name")


@dataclass(frozen=True)
class Protocol:
    """What every row shares: the data (a dataset label's flags), the networks, the seeds, the validation fraction and the epochs."""

    datasets: tuple[str, ...]
    networks: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int
    val_fraction: float
    extra: tuple[str, ...] = ()  # every run's flags after --

    def check(self) -> None:
        for flag in self.extra:
            if flag.split("=")[0] in PROTOCOL_FLAGS:
                raise UserError(f"{flag.split('=')[0]} is set by the protocol; give it to tools/leaderboard.py, not after --")
        if self.epochs < 1 or not 0 < self.val_fraction < 1 or not self.seeds:
            raise UserError("the protocol needs --epochs >= 1, --val-fraction in (0, 1) (selection on validation) and at least one seed")


def trains_epochs(method: str) -> bool:
    ensure_registered(method)
    return FAMILIES[get_method(method).family].trains_epochs


def row_jobs(row: Row, protocol: Protocol, networks: tuple[str | None, ...]) -> list[Job]:
    epochs = ("--epochs", str(protocol.epochs)) if trains_epochs(row.method) else ()
    flags = (*epochs, "--val-fraction", repr(protocol.val_fraction), *row.flags, *protocol.extra)
    return [
        Job(row.method, dataset, network, int(seed), None, flags, row.label, BEYOND_DATASETS.get(dataset, ()))
        for dataset in protocol.datasets for network in networks for seed in protocol.seeds
    ]  # fmt: skip


def plan_rows(rows: list[Row], protocol: Protocol, results: Path, python: str = sys.executable, data_path: str | None = None,
              own_network: bool = False) -> list[PlannedJob]:  # fmt: skip
    """Every run of every row, with its run folder and status (finished runs are read, not retrained).
    ``own_network``: the rows pick their own model (the CLIP section)."""
    networks = (None,) if own_network else protocol.networks
    return plan([job for row in rows for job in row_jobs(row, protocol, networks)], results, python, data_path)


def clip_weights_missing(method: str, argv: list[str]) -> str | None:
    """Why the CLIP rows cannot run here (their weights are not on disk and nothing downloads), else None."""
    from models.clip.model import resolve_weights
    from tools.sweep.jobs import method_config

    try:
        config = method_config(method, argv)
        extra = config.extra or {}
        resolve_weights(config.network, extra.get("clip_pretrained", "openai"), extra.get("clip_weights"), download=False)
    except UserError as exc:
        return str(exc)
    except Exception as exc:  # open_clip missing or refusing the name
        return f"{type(exc).__name__}: {exc}"
    return None
