"""Figures of a results tree: ILM-VP's gain over FLM-VP per dataset (Fig. 2), accuracy against the fraction of data (Fig. 3)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tools.figures import common
from tools.figures.common import PlotError, pyplot
from tools.tables import METHOD_NAMES, NETWORK_NAMES, build_cells, collect_runs, layout, matches, missing_report

# ---------------------------------------------------------------------------------------------
# 4. ILM-VP's gain over FLM-VP per dataset


def gain_with_error(a, b) -> tuple[float, float | None, int]:
    """``mean(a) - mean(b)`` with its standard deviation and the number of seeds behind it.

    With two or more seeds in both cells the deviation is that of the per-seed differences
    (paired by seed); otherwise it combines the two cells' deviations, when both have one.
    """
    common = sorted(set(a.values) & set(b.values))
    if len(common) >= 2:
        diffs = [a.values[s] - b.values[s] for s in common]
        return float(np.mean(diffs)), float(np.std(diffs, ddof=1)), len(common)
    error = float(np.hypot(a.std, b.std)) if a.std is not None and b.std is not None else None
    return a.mean - b.mean, error, min(a.n, b.n)


def plot_gain(
    results: Path, out: Path, network: str | None = None, where: dict | None = None,
    compare: dict[str, str] | None = None, seeds: list[int] | None = None, better: str = "ilm_vp", base: str = "flm_vp",
) -> Path:  # fmt: skip
    """Bars of ``better - base`` per dataset: ours (error bar: std over seeds) beside the paper's
    (error bar: its two stds combined), each labelled with the network it was measured on."""
    runs = [r for r in collect_runs(results) if r.method in (better, base) and matches(r, where or {})]
    if network:
        runs = [r for r in runs if r.network == network]
    cells = build_cells(runs, None, seeds, compare=compare)
    report = missing_report(cells)
    rows, columns = layout(cells)
    bars = []  # (label, ours, ours_err, n, paper, paper_err, our network, paper network)
    for dataset in rows:
        for net in sorted({n for n, _ in columns}):
            a, b = cells.get((dataset, net, better)), cells.get((dataset, net, base))
            if a is None or b is None or a.mean is None or b.mean is None:
                continue
            gain, error, n = gain_with_error(a, b)
            paper = paper_error = None
            if a.paper and b.paper:
                paper = a.paper[0] - b.paper[0]
                paper_error = float(np.hypot(a.paper[1], b.paper[1])) if a.paper[1] is not None and b.paper[1] is not None else None
            paper_net = (compare or {}).get(net, net)
            bars.append((dataset if network else f"{dataset}\n{net}", gain, error, n, paper, paper_error, net, paper_net))
    if not bars:
        raise PlotError(f"no dataset under {results} has finished {better} and {base} runs" + (f" on {network}" if network else ""))
    for line in report:
        print(f"note: {line}", file=sys.stderr)
    name = lambda net: NETWORK_NAMES.get(net, net)  # noqa: E731
    x = np.arange(len(bars))
    has_paper = any(bar[4] is not None for bar in bars)
    width = 0.4 if has_paper else 0.6
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.8 * len(bars) + 2.0), 4.0))
    seeds_shown = sorted({bar[3] for bar in bars})
    seeds_text = f"{seeds_shown[0]}" if len(seeds_shown) == 1 else f"{seeds_shown[0]}-{seeds_shown[-1]}"
    our_nets = sorted({bar[6] for bar in bars})
    ours_label = f"ours, {', '.join(name(n) for n in our_nets)} (mean ± std over {seeds_text} seed{'s' if seeds_shown[-1] > 1 else ''})"
    errors = [bar[2] if bar[2] is not None else 0.0 for bar in bars]
    ours = ax.bar(x - (width / 2 if has_paper else 0), [bar[1] for bar in bars], width, yerr=errors, capsize=3, label=ours_label, color="#1f77b4")
    ax.bar_label(ours, fmt="%.1f", fontsize=7, padding=2)
    if has_paper:
        paper_nets = sorted({bar[7] for bar in bars if bar[4] is not None})
        paper_label = f"paper, {', '.join(name(n) for n in paper_nets)} (mean ± std over 3 runs)"
        paper_errors = [bar[5] if bar[5] is not None else 0.0 for bar in bars]
        paper = ax.bar(x + width / 2, [bar[4] if bar[4] is not None else 0 for bar in bars], width, yerr=paper_errors, capsize=3,
                       label=paper_label, color="#bbbbbb")  # fmt: skip
        ax.bar_label(paper, labels=["" if bar[4] is None else f"{bar[4]:.1f}" for bar in bars], fontsize=7, padding=2)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, [bar[0] for bar in bars], fontsize=8, rotation=30 if len(bars) > 6 else 0)
    ax.set_ylabel(f"{METHOD_NAMES.get(better, better)} − {METHOD_NAMES.get(base, base)}\n(test accuracy points)")
    title = f"gain of {METHOD_NAMES.get(better, better)} over {METHOD_NAMES.get(base, base)}"
    if has_paper and any(bar[6] != bar[7] for bar in bars if bar[4] is not None):
        title += "\n(ours and the paper's: different networks)"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return common.save(fig, out)


# ---------------------------------------------------------------------------------------------
# 5. Accuracy against the fraction of training data


def plot_fraction(
    results: Path, out: Path, dataset: str, network: str | None = None, methods: tuple[str, ...] = ("ilm_vp", "flm_vp"),
    where: dict | None = None,
) -> Path:  # fmt: skip
    """Mean ± std over seeds of the best-epoch test accuracy per ``--train-fraction`` (none = 1)."""
    points: dict[str, dict[float, list[float]]] = {}
    for run in collect_runs(results):
        if run.method not in methods or run.dataset != dataset or (network and run.network != network):
            continue
        if run.status != "finished" or not matches(run, where or {}):
            continue
        fraction = json.loads(run.setting).get("train_fraction") or 1.0
        points.setdefault(run.method, {}).setdefault(float(fraction), []).append(run.results["best_test_acc"])
    if not points:
        raise PlotError(f"no finished {'/'.join(methods)} runs on {dataset} under {results}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for method in methods:
        if method not in points:
            continue
        fractions = sorted(points[method])
        means = [np.mean(points[method][f]) for f in fractions]
        stds = [np.std(points[method][f], ddof=1) if len(points[method][f]) > 1 else 0.0 for f in fractions]
        ns = [len(points[method][f]) for f in fractions]
        label = f"{METHOD_NAMES.get(method, method)} (seeds per point: {min(ns)}–{max(ns)})" if min(ns) != max(ns) else f"{METHOD_NAMES.get(method, method)} ({ns[0]} seed{'s' if ns[0] > 1 else ''})"
        ax.errorbar([100 * f for f in fractions], means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set_xlabel("training data used (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{dataset}" + (f", {NETWORK_NAMES.get(network, network)}" if network else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return common.save(fig, out)
