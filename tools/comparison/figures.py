"""The comparison's figures: validation-selected accuracy against trainable parameters and against time, with the Pareto front."""
from __future__ import annotations

from pathlib import Path

from tools.comparison.table import Entry, mean_std, median_range


def pareto_front(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The points (cost, accuracy, label) no other point beats on both (lower cost, higher accuracy), by rising cost."""
    front, best = [], float("-inf")
    for cost, acc, label in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((cost, acc, label))
            best = acc
    return front


def pareto_figures(found: dict[tuple[str, str, str], Entry], out_dir: Path) -> list[Path]:
    """One PNG per dataset x network: two panels (parameters, seconds per epoch) with every row's mean."""
    from tools.figures.common import pyplot

    plt = pyplot()
    written = []
    for dataset, network in sorted({(e.dataset, e.network) for e in found.values()}):
        group = [e for e in found.values() if (e.dataset, e.network) == (dataset, network) and e.val_selected]
        if not group:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
        for ax, (what, cost) in zip(axes, (("trainable parameters", lambda e: e.trainable_params), ("seconds per epoch (median over seeds)", lambda e: median_range(e.epoch_seconds)[0]))):
            points = [(cost(e), mean_std(e.val_selected)[0], e.row) for e in group if cost(e)]
            for x, y, label in points:
                ax.scatter([x], [y], s=28)
                ax.annotate(label, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
            front = pareto_front(points)
            ax.plot([p[0] for p in front], [p[1] for p in front], color="0.4", linewidth=1, linestyle="--", label="Pareto front")
            ax.set_xscale("log")
            ax.set_xlabel(what + " (log)")
            ax.set_ylabel("validation-selected test accuracy (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"{dataset}, {network}: mean over seeds", fontsize=10)
        fig.tight_layout()
        path = Path(out_dir) / f"pareto_{dataset}_{network}.png".replace("/", "-")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
