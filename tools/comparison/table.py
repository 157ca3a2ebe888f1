"""The comparison's table, read from the run folders (:mod:`runner.records`): one entry per row x dataset x network."""
from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field

from runner.records import read_run
from tools.sweep.jobs import PlannedJob

FEWER_MARK, SUBSET_MARK = "!", "§"


@dataclass
class Entry:
    row: str
    dataset: str
    network: str
    reference: bool
    expected_seeds: list[int]
    val_selected: dict[int, float] = field(default_factory=dict)  # seed -> test accuracy at the best validation epoch
    best_on_test: dict[int, float] = field(default_factory=dict)  # seed -> the best test accuracy over epochs (not a selection)
    trainable_params: int | None = None
    epoch_seconds: dict[int, float] = field(default_factory=dict)
    peak_memory_mb: dict[int, float] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)  # subset or budget against the protocol
    missing: list[str] = field(default_factory=list)
    run_dirs: dict[int, str] = field(default_factory=dict)
    machines: dict[int, str] = field(default_factory=dict)  # seed -> what it computed on ("" if not recorded)
    command: str = ""

    @property
    def fewer_seeds(self) -> bool:
        return len(self.val_selected) < len(self.expected_seeds)


def mean_std(values: dict[int, float]) -> tuple[float | None, float | None]:
    vals = list(values.values())
    return (statistics.fmean(vals) if vals else None), (statistics.stdev(vals) if len(vals) > 1 else None)


def median_range(values: dict[int, float]) -> tuple[float | None, float | None, float | None]:
    """Median, lowest and highest: a time over seeds, where one run slowed by a neighbour on its
    machine should move the figure less than a mean lets it."""
    vals = list(values.values())
    return (statistics.median(vals), min(vals), max(vals)) if vals else (None, None, None)


def val_selected(results: dict) -> float | None:
    """The test accuracy chosen on validation: at the best validation epoch, or a method solved in one go's only number."""
    if results.get("val_selected_test_acc") is not None:
        return float(results["val_selected_test_acc"])
    return float(results["final_test_acc"]) if results.get("val_acc") is not None and results.get("final_test_acc") is not None else None


def entries(planned: list[PlannedJob], epochs: int, references: set[str]) -> dict[tuple[str, str, str], Entry]:
    found: dict[tuple[str, str, str], Entry] = {}
    for p in planned:
        key = (p.job.variant, p.job.dataset, p.job.network or "own")
        entry = found.setdefault(key, Entry(*key, reference=p.job.variant in references, expected_seeds=[]))
        entry.expected_seeds.append(p.job.seed)
        entry.command = entry.command or " ".join(["python", *p.command[1:]])
        record = read_run(p.run_dir)
        results = record.results if record is not None else None
        if results is None or val_selected(results) is None:
            entry.missing.append(f"seed {p.job.seed}: {record.status if record else 'new'} ({p.run_dir})")
            continue
        seed = p.job.seed
        entry.val_selected[seed] = val_selected(results)
        if results.get("best_test_acc") is not None:
            entry.best_on_test[seed] = float(results["best_test_acc"])
        if results.get("mean_epoch_seconds") is not None:
            entry.epoch_seconds[seed] = float(results["mean_epoch_seconds"])
        if results.get("peak_memory_mb") is not None:
            entry.peak_memory_mb[seed] = float(results["peak_memory_mb"])
        if results.get("trainable_params") is not None:
            entry.trainable_params = int(results["trainable_params"])
        entry.run_dirs[seed] = str(p.run_dir)
        entry.machines[seed] = record.machine
        entry.differences = sorted(set(entry.differences) | set(record.differences(epochs if record.epochs is not None else None)))
    return found


def _cell(values: dict[int, float], digits: int = 1) -> str:
    mean, std = mean_std(values)
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _time_cell(values: dict[int, float]) -> str:
    median, low, high = median_range(values)
    if median is None:
        return "–"
    return f"{median:.1f}" + (f" [{low:.1f}, {high:.1f}]" if len(values) > 1 else "")


def machines(found: dict[tuple[str, str, str], Entry]) -> Counter[str]:
    """How many of the table's runs computed on each machine (``""``: not recorded)."""
    return Counter(label for e in found.values() for label in e.machines.values())


def markdown(found: dict[tuple[str, str, str], Entry]) -> str:
    lines = [
        "| dataset | network | method | val-selected test acc. (%) | best-on-test (%) ✝ | trainable params | s / epoch (median [min, max]) | peak memory (MiB) | seeds | marks |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in found.values():
        marks = ([f"{FEWER_MARK} {len(e.val_selected)}/{len(e.expected_seeds)} seeds"] if e.fewer_seeds else []) + (
            [f"{SUBSET_MARK} {', '.join(e.differences)}"] if e.differences else [])  # fmt: skip
        label = f"*{e.row}* (reference)" if e.reference else e.row
        lines.append(
            f"| {e.dataset} | {e.network} | {label} | {_cell(e.val_selected)} | {_cell(e.best_on_test)} | "
            f"{'–' if e.trainable_params is None else f'{e.trainable_params:,}'} | {_time_cell(e.epoch_seconds)} | {_cell(e.peak_memory_mb, 0)} | "
            f"{' '.join(map(str, sorted(e.val_selected))) or '–'} | {'; '.join(marks)} |"
        )
    return "\n".join(lines) + "\n"


def to_csv(found: dict[tuple[str, str, str], Entry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["dataset", "network", "method", "reference", "val_selected_mean", "val_selected_std", "best_on_test_mean", "best_on_test_std",
                     "trainable_params", "epoch_seconds_median", "peak_memory_mb_mean", "seeds", "expected_seeds", "differences"])  # fmt: skip
    fmt = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    for e in found.values():
        (vm, vs), (bm, bs) = mean_std(e.val_selected), mean_std(e.best_on_test)
        writer.writerow([e.dataset, e.network, e.row, int(e.reference), fmt(vm), fmt(vs), fmt(bm), fmt(bs), "" if e.trainable_params is None else e.trainable_params,
                         fmt(median_range(e.epoch_seconds)[0]), fmt(mean_std(e.peak_memory_mb)[0]), " ".join(map(str, sorted(e.val_selected))),
                         " ".join(map(str, sorted(e.expected_seeds))), "; ".join(e.differences)])  # fmt: skip
    return out.getvalue()


def to_json(found: dict[tuple[str, str, str], Entry]) -> list[dict]:
    rows = []
    for e in found.values():
        (vm, vs), (bm, bs) = mean_std(e.val_selected), mean_std(e.best_on_test)
        rows.append({**asdict(e), "val_selected_mean": vm, "val_selected_std": vs, "best_on_test_mean": bm, "best_on_test_std": bs,
                     "epoch_seconds_median": median_range(e.epoch_seconds)[0]})  # fmt: skip
    return rows
