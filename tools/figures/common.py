"""What every figure shares: the one-line error, epoch files of a run, its title, pyplot on demand, saving."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from runner.records import read_run
from tools.tables.paper_table import METHOD_NAMES, NETWORK_NAMES


def pyplot():
    """matplotlib's pyplot on the file backend, imported when a figure is drawn (not at the tool's start)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class PlotError(Exception):
    """Nothing to draw: a one-line message for the user."""


def _epoch_files(folder: Path, suffix: str) -> dict[int, Path]:
    found = {}
    for path in folder.glob(f"epoch_*{suffix}"):
        match = re.fullmatch(rf"epoch_(\d+){re.escape(suffix)}", path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def pick_epochs(available: list[int], wanted: list[int] | None, most: int) -> list[int]:
    """``wanted`` if given (must exist), else at most ``most`` evenly spread, first and last included."""
    if wanted:
        missing = [e for e in wanted if e not in available]
        if missing:
            raise PlotError(f"no snapshot for epoch(s) {missing}; available: {available}")
        return list(wanted)
    if len(available) <= most:
        return list(available)
    index = np.unique(np.linspace(0, len(available) - 1, most).round().astype(int))
    return [available[i] for i in index]


def run_title(run: Path) -> str:
    try:
        config = read_run(run).config
        method = METHOD_NAMES.get(config["method"], config["method"])
        return f"{method}, {config['dataset']}, {NETWORK_NAMES.get(config['network'], config['network'])}, seed {config['seed']}"
    except (AttributeError, KeyError):
        return run.name


def save(fig, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt = pyplot()
    plt.close(fig)
    return out
