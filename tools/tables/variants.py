"""The table of a comparison preset (``beyond``): one row per configuration, both protocols, parameters and seconds per epoch."""
from __future__ import annotations

import csv
import io
import shlex
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import cfg
from runner.records import read_finished
from tools.sweep.jobs import expand_variants, plan
from tools.sweep.presets import PRESETS

DATASET_NAMES = {"cifar10": "CIFAR-10", "dtd10": "DTD-10"}


@dataclass
class VariantCell:
    """One configuration on one dataset: the numbers of every finished seed."""

    variant: str
    dataset: str
    expected_seeds: list[int]
    best: dict[int, float] = field(default_factory=dict)  # seed -> best-on-test accuracy
    val: dict[int, float] = field(default_factory=dict)  # seed -> validation-selected test accuracy
    seconds: dict[int, float] = field(default_factory=dict)  # seed -> mean seconds per epoch
    params: int | None = None  # trainable parameters of the input transform (else of everything)
    mapping_params: int = 0
    missing: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)  # the first seed's command


def mean_std(values: dict[int, float]) -> tuple[float | None, float | None]:
    vals = list(values.values())
    return (statistics.fmean(vals) if vals else None), (statistics.stdev(vals) if len(vals) > 1 else None)


def variant_cells(preset_name: str, root: Path, datasets=None, variants=None, seeds=None, data_path=None) -> dict[tuple[str, str], VariantCell]:
    """(variant, dataset) -> VariantCell, read from the run folders the preset's jobs write."""
    preset = PRESETS[preset_name]
    seeds = list(seeds or preset.seeds)
    planned = plan(expand_variants(preset, datasets, None, seeds, variants), Path(root), data_path=data_path)
    cells: dict[tuple[str, str], VariantCell] = {}
    for p in planned:
        key = (p.job.variant, p.job.dataset)
        cell = cells.setdefault(key, VariantCell(*key, expected_seeds=seeds))
        if not cell.command:
            cell.command = p.command
        results = read_finished(p.run_dir)
        if results is None or p.status != "finished":
            cell.missing.append(f"{p.job.variant} / {p.job.dataset}: seed {p.job.seed} {p.status} ({p.run_dir})")
            continue
        cell.best[p.job.seed] = float(results["best_test_acc"])
        if results.get("val_selected_test_acc") is not None:
            cell.val[p.job.seed] = float(results["val_selected_test_acc"])
        if results.get("mean_epoch_seconds") is not None:
            cell.seconds[p.job.seed] = float(results["mean_epoch_seconds"])
        cell.params = int(results.get("prompt_params", results.get("trainable_params", 0)))
        cell.mapping_params = int(results.get("mapping_params", 0))
    return cells


def _fmt(values: dict[int, float], expected: int, bold: bool = False, digits: int = 1) -> str:
    mean, std = mean_std(values)
    if mean is None:
        return "–"
    text = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")
    text = f"**{text}**" if bold else text
    return text + ("" if len(values) == expected else f" ({len(values)}/{expected})!")


def variant_markdown(preset_name: str, cells: dict[tuple[str, str], VariantCell], title: str = "") -> str:
    preset = PRESETS[preset_name]
    variants = [v for v in preset.variants if any(k[0] == v.label for k in cells)]
    datasets = [d for d in preset.datasets if any(k[1] == d for k in cells)]
    contenders = [v.label for v in variants if not v.reference]

    def top(dataset: str, which: str) -> float | None:
        means = [mean_std(getattr(cells[(v, dataset)], which))[0] for v in contenders if (v, dataset) in cells]
        means = [m for m in means if m is not None]
        return round(max(means), 1) if means else None

    head = ["configuration", "prompt params"]
    for d in datasets:
        name = DATASET_NAMES.get(d, d)
        head += [f"{name} best-on-test", f"{name} val-selected", f"{name} s/epoch"]
    seeds = sorted({s for c in cells.values() for s in c.expected_seeds})
    lines = [f"### {title}", ""] if title else []
    lines += [
        f"Test accuracy (%): mean ± std (sample) over seeds {', '.join(map(str, seeds))}; `(n/N)!` = seeds missing. "
        "best-on-test: the highest test accuracy over the epochs (the papers' protocol); val-selected: the test accuracy "
        "at the epoch of the highest validation accuracy. Bold: the best configuration of the column (reference lines "
        "in italics are not ranked). s/epoch: mean seconds per epoch (mapping pass, training, test and validation).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for v in variants:
        row_cells = [cells.get((v.label, d)) for d in datasets]
        known = next((c for c in row_cells if c is not None and c.params is not None), None)
        params = "–" if known is None else f"{known.params:,}" + (f" (+{known.mapping_params:,} mapping)" if known.mapping_params else "")
        label = f"*{v.label}* (reference)" if v.reference else v.label
        row = [label, params if not v.reference else f"{params} (head)"]
        for d, cell in zip(datasets, row_cells):
            if cell is None:
                row += ["", "", ""]
                continue
            n = len(cell.expected_seeds)
            best_mean, val_mean = mean_std(cell.best)[0], mean_std(cell.val)[0]
            row += [
                _fmt(cell.best, n, not v.reference and best_mean is not None and round(best_mean, 1) == top(d, "best")),
                _fmt(cell.val, n, not v.reference and val_mean is not None and round(val_mean, 1) == top(d, "val")),
                _fmt(cell.seconds, n),
            ]
        lines.append("| " + " | ".join(row) + " |")
    missing = [m for c in cells.values() for m in c.missing]
    lines += ["", f"Missing or unfinished runs: {len(missing) or 'none'}"] + [f"- {m}" for m in missing]
    lines += ["", "Commands (first seed; the others differ only in `--seed`):", "", "```"]
    for v in variants:
        for d in datasets:
            cell = cells.get((v.label, d))
            if cell is not None and cell.command:
                lines.append(shlex.join(["python", *[Path(a).relative_to(cfg.REPO_ROOT).as_posix() if a.startswith(str(cfg.REPO_ROOT) + "/experiments") else a for a in cell.command[1:]]]))
    lines.append("```")
    return "\n".join(lines) + "\n"


def variant_csv(cells: dict[tuple[str, str], VariantCell]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["configuration", "dataset", "prompt_params", "mapping_params", "n", "expected",
                     "best_mean", "best_std", "val_selected_mean", "val_selected_std", "epoch_seconds_mean", "seeds"])  # fmt: skip
    fmt = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    for cell in cells.values():
        (bm, bs), (vm, vs), (sm, _) = mean_std(cell.best), mean_std(cell.val), mean_std(cell.seconds)
        writer.writerow([cell.variant, cell.dataset, "" if cell.params is None else cell.params, cell.mapping_params, len(cell.best),
                         len(cell.expected_seeds), fmt(bm), fmt(bs), fmt(vm), fmt(vs), fmt(sm), " ".join(map(str, sorted(cell.best)))])  # fmt: skip
    return buffer.getvalue()
