"""Cells of the paper-layout tables: (dataset, network, method) -> the seeds of one setting, beside the paper's numbers."""
from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from tools.sweep.presets import CLIP_METHODS, PRESETS
from tools.tables.runs import Run

PAPER_DIR = Path(__file__).resolve().parents[1] / "paper_results"
CLIP_COLUMN = "clip"  # the single network column of the CLIP table
PROTOCOLS = {"best": "best_test_acc", "final": "final_test_acc", "val": "val_selected_test_acc"}


def load_paper() -> dict[tuple[str, str, str], tuple[float, float | None]]:
    """(dataset, network, method) -> (mean, std); CLIP rows use the network ``clip``."""
    paper = {}
    with open(PAPER_DIR / "ilm_vp_table1.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            paper[(row["dataset"], row["network"], row["method"])] = (float(row["mean"]), float(row["std"]))
    with open(PAPER_DIR / "ilm_vp_clip_table2.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            for method in CLIP_METHODS:
                paper[(row["dataset"], CLIP_COLUMN, method)] = (float(row[method]), None)
    return paper




@dataclass
class Cell:
    dataset: str
    network: str
    method: str
    expected_seeds: list[int]
    values: dict[int, float] = field(default_factory=dict)  # seed -> accuracy
    protocol: str = "best"
    incomplete: list[Run] = field(default_factory=list)
    other_settings: int = 0  # settings found besides the one used
    paper: tuple[float, float | None] | None = None
    random_weights: bool = False  # its runs used a randomly initialised network
    setting: str = ""  # the setting shown (sorted JSON), when runs were found
    other_setting_list: list[str] = field(default_factory=list)  # the settings found and not shown
    differences: list[str] = field(default_factory=list)  # how the runs shown depart from the method's protocol

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values.values()) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n - 1); undefined for one seed."""
        return statistics.stdev(self.values.values()) if self.n > 1 else None

    @property
    def missing_seeds(self) -> list[int]:
        return [s for s in self.expected_seeds if s not in self.values]

    @property
    def complete(self) -> bool:
        return not self.missing_seeds


def choose_setting(runs: list[Run]) -> tuple[list[Run], int]:
    """Runs of one cell may come from several settings (e.g. two epoch budgets): use the one
    with the most finished runs (ties: the most recently written) and count the others."""
    shown, others = group_settings(runs)
    return shown, len(others)


def group_settings(runs: list[Run]) -> tuple[list[Run], list[str]]:
    """The runs of the setting shown (see :func:`choose_setting`) and the other settings found."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.setting, []).append(run)

    def rank(setting: str) -> tuple[int, float]:
        members = groups[setting]
        return sum(r.status == "finished" for r in members), max(r.path.stat().st_mtime for r in members)

    best = max(groups, key=rank)
    return groups[best], [s for s in groups if s != best]


def build_cells(
    runs: list[Run],
    expected: list[tuple[str, str, str]] | None,
    seeds: list[int] | None,
    protocol: str = "auto",
    clip: bool = False,
    compare: dict[str, str] | None = None,
    epochs: int | dict[str, int] | None = None,
) -> dict[tuple[str, str, str], Cell]:
    """(dataset, network, method) -> Cell. ``expected`` lists the cells that must appear (all
    found ones otherwise); ``seeds`` the seeds each needs (default: every seed seen); ``compare``
    maps a network to the paper network whose numbers go beside it. A cell whose runs read a subset
    or trained another number of ``epochs`` (a number, or one per method; default: the budget most
    runs shown have) than the protocol notes it in ``differences``."""
    by_cell: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        network = CLIP_COLUMN if clip else run.network
        by_cell.setdefault((run.dataset, network, run.method), []).append(run)
    keys = list(expected) if expected is not None else sorted(by_cell)
    chosen = {key: group_settings(by_cell[key]) for key in keys if key in by_cell}
    if seeds is None:
        seeds = sorted({r.seed for members, _ in chosen.values() for r in members})
    paper = load_paper()
    cells = {}
    for key in keys:
        members, others = chosen.get(key, ([], []))
        cell = Cell(*key, expected_seeds=list(seeds), other_settings=len(others), paper=paper.get((key[0], (compare or {}).get(key[1], key[1]), key[2])))
        cell.setting, cell.other_setting_list = (members[0].setting if members else ""), others
        members = [r for r in members if r.seed in seeds]
        cell.differences = sorted({d for r in members for d in r.differences})
        finished = [r for r in members if r.status == "finished"]
        cell.random_weights = any(r.random_weights for r in members)
        cell.protocol = protocol
        if protocol == "auto":
            has_val = finished and all(r.results.get("val_selected_test_acc") is not None for r in finished)
            cell.protocol = "val" if has_val else "best"
        for run in finished:
            value = run.results.get(PROTOCOLS[cell.protocol])
            if value is None:
                cell.incomplete.append(run)  # finished but without the requested number
            else:
                cell.values[run.seed] = float(value)
        cell.incomplete += [r for r in members if r.status != "finished"]
        cells[key] = cell
    budget_differences(cells, chosen, epochs)
    return cells


def budget_differences(cells: dict, chosen: dict, epochs: int | dict[str, int] | None) -> None:
    """Add ``k/N epochs`` to the differences of cells whose runs trained another budget than the protocol's."""
    shown = [r for members, _ in chosen.values() for r in members]
    if epochs is None and shown:
        budgets = [r.epochs for r in shown]
        epochs = max(set(budgets), key=lambda b: (budgets.count(b), b))
    for key, cell in cells.items():
        wanted = epochs.get(key[2]) if isinstance(epochs, dict) else epochs
        trained = {r.epochs for r in chosen.get(key, ([], []))[0] if r.seed in cell.expected_seeds}
        cell.differences += [f"{e}/{wanted} epochs" for e in sorted(trained) if wanted is not None and e != wanted]




def expected_cells(preset_name: str, datasets=None, networks=None, methods=None) -> list[tuple[str, str, str]]:
    preset = PRESETS[preset_name]
    clip = preset.networks == (None,)
    cells = []
    for dataset in datasets or preset.datasets:
        for network in [CLIP_COLUMN] if clip else (networks or preset.networks):
            for method in methods or preset.methods:
                allowed = preset.only_networks.get(method)
                if allowed is None or network in allowed or networks:
                    cells.append((dataset, network, method))
    return cells
