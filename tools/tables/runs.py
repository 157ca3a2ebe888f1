"""Runs as the tables see them: a run record (:mod:`runner.records`) with the setting it belongs to.

A *setting* is every result-determining flag except the seed (as the run folder's identity sees
it), so the runs of one setting are seeds of one experiment and two settings in one cell (two
epoch budgets, a subset) are never averaged together.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from algorithms.methods import METHODS, resolve_settings  # each family's rule for what is part of a run's identity
from algorithms.settings import AUGMENT_FLAGS, INIT_SEEDING, RunConfig, result_settings
from runner.records import FAILED, FINISHED, RUNNING, STOPPED, RunRecord, find_runs

# the record's status as the tables name it
STATUS_NAMES = {FINISHED: "finished", STOPPED: "partial", RUNNING: "running", FAILED: "started"}


@dataclass
class Run:
    path: Path
    method: str
    dataset: str
    network: str
    seed: int
    setting: str  # every result-determining flag except the seed, as sorted JSON
    epochs: int
    status: str  # finished | partial | running | started
    results: dict | None
    epochs_done: int = 0
    random_weights: bool = False  # the network had no pretrained weights (CLIP with --clip-pretrained none)
    differences: list[str] = field(default_factory=list)  # the subset it ran on (train 128, fraction 0.1, ...)


def identity(written: dict) -> dict:
    """The setting of a run's ``config.json`` (its result-determining flags but the seed)."""
    config = written["config"]
    found = {k: v for k, v in result_settings(config).items() if k != "seed"}
    resolved = resolve_settings(RunConfig.from_dict(config))
    found.update(resolved.chunking_settings())  # chunks change what some runs train
    augment = resolved.augment_settings()
    if augment:  # one recipe, however --augment was spelt (as the run folder)
        found["extra"] = {k: v for k, v in found["extra"].items() if k not in AUGMENT_FLAGS}
        found.update(augment)
    # a random-start run made since initialisations have their own generators records it (resolved)
    found.update({k: v for k, v in (written.get("resolved") or {}).items() if k in INIT_SEEDING})
    location = (written.get("data") or {}).get("location")
    if location:  # the same flags on two datasets are two settings
        found["data_location"] = location
    return found


def protocol_epochs(method: str) -> int:
    """The epochs of the method's own recipe (its registered defaults, else the paper's 200)."""
    spec = METHODS.get(method)
    return int((spec.defaults if spec else {}).get("epochs", RunConfig(method=method).epochs))


def table_run(record: RunRecord) -> Run | None:
    try:
        setting = json.dumps(identity(record.written), sort_keys=True, default=str)
    except (KeyError, TypeError, ValueError):
        return None
    config = record.config
    return Run(
        record.path, record.method, record.dataset, record.network, record.seed, setting, int(config["epochs"]),
        STATUS_NAMES.get(record.status, "started"), record.results, record.epochs_done, random_weights=has_random_weights(config),
        differences=record.differences(),
    )  # fmt: skip


def read_run(path: Path) -> Run | None:
    from runner.records import read_run as read_record

    record = read_record(path)
    return table_run(record) if record is not None and record.config else None


def has_random_weights(config: dict) -> bool:
    """Whether a run's network was randomly initialised: CLIP with ``--clip-pretrained none`` and no weights file."""
    extra = config.get("extra") or {}
    return str(extra.get("clip_pretrained", "")).lower() == "none" and not (extra.get("clip_weights") or config.get("weights"))


def collect_runs(root: Path) -> list[Run]:
    """Every run folder below ``root`` (:func:`runner.records.find_runs`)."""
    runs = [table_run(r) for r in find_runs(root)]
    return [r for r in runs if r is not None]


def matches(run: Run, where: dict[str, object]) -> bool:
    settings = json.loads(run.setting)
    settings["seed"] = run.seed
    return all(key in settings and _same(settings[key], value) for key, value in where.items())


def _same(actual, wanted) -> bool:
    return actual == wanted or str(actual) == str(wanted)


def parse_where(items: list[str]) -> dict[str, object]:
    where = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: expected KEY=VALUE, got {item!r}")
        try:
            where[key.replace("-", "_")] = json.loads(value)
        except ValueError:
            where[key.replace("-", "_")] = value
    return where


def setting_difference(shown: str, other: str) -> str:
    """What sets two settings apart, as ``--where`` would select them: ``epochs=5 (not 10)``."""
    a, b = json.loads(shown), json.loads(other)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}={json.dumps(a.get(k))} (other: {json.dumps(b.get(k))})" for k in keys) or "identical flags"
