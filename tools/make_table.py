#!/usr/bin/env python
"""Result tables in the paper's layout, from run folders, with the published numbers beside ours.

    python tools/make_table.py results --preset table1 --output docs/table1   # .md and .csv
    python tools/make_table.py results --preset clip --output docs/table_clip
    python tools/make_table.py results --seeds 1 2 --where epochs=5
    python tools/make_table.py results --preset beyond --output docs/beyond_table  # a comparison preset

Rows are datasets, columns network x method, each cell ``mean ± std (n)`` over seeds and the
paper's mean after a slash; the best method of each network in a row is bold. Cells with fewer
finished seeds than expected are marked ``(n/N)!`` and every missing or unfinished run is listed
below the table. Numbers follow the paper's protocol (the best epoch's test accuracy) unless a
run chose its epoch on a validation split (``val_selected_test_acc``), marked with a dagger.

A comparison preset (one with variants, e.g. ``beyond``) gives one row per configuration and, per
dataset, both protocols side by side, the prompt's parameters and the seconds per epoch; its run
folders are found exactly as ``tools/reproduce.py`` plans them.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import shlex
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cfg  # noqa: E402
from algorithms.methods import resolve_settings  # noqa: E402  (each family's rule for what is part of a run's identity)
from algorithms.settings import AUGMENT_FLAGS, INIT_SEEDING, RunConfig, result_settings  # noqa: E402
from common.errors import UserError  # noqa: E402
from runner.config import add_hidden_alias, tool_parser  # noqa: E402
from tools.reproduce import (  # noqa: E402
    CLIP_DATASETS,
    CLIP_METHODS,
    CNN_METHODS,
    PRESETS,
    TABLE1_DATASETS,
    TABLE1_NETWORKS,
    expand_variants,
    plan,
    run_status,
)

PAPER_DIR = Path(__file__).resolve().parent / "paper_results"
CLIP_COLUMN = "clip"  # the single network column of the CLIP table
METHOD_NAMES = {
    "ilm_vp": "ILM-VP", "flm_vp": "FLM-VP", "rlm_vp": "RLM-VP", "linear_probing": "LP", "full_finetune": "FF",
    "ilm_tp_vp": "VP+TP+LM", "single_tp_vp": "VP+TP",
}  # fmt: skip
NETWORK_NAMES = {"resnet18": "ResNet-18", "resnet50": "ResNet-50", "instagram": "ResNeXt-101-IG", CLIP_COLUMN: "CLIP"}
PROTOCOLS = {"best": "best_test_acc", "final": "final_test_acc", "val": "val_selected_test_acc"}
RANDOM_MARK = "‡"
RANDOM_NOTE = f"{RANDOM_MARK} = a randomly initialised network (no pretrained weights): a check of the code, not comparable with the paper."


# ---------------------------------------------------------------------------------------------
# Reading run folders


@dataclass
class Run:
    path: Path
    method: str
    dataset: str
    network: str
    seed: int
    setting: str  # every result-determining flag except the seed, as sorted JSON
    epochs: int
    status: str  # finished | partial | started
    results: dict | None
    epochs_done: int = 0
    random_weights: bool = False  # the network had no pretrained weights (CLIP with --clip-pretrained none)


def read_run(path: Path) -> Run | None:
    try:
        written = json.loads((path / "config.json").read_text())
        config = written["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    identity = {k: v for k, v in result_settings(config).items() if k != "seed"}
    resolved = resolve_settings(RunConfig.from_dict(config))
    identity.update(resolved.chunking_settings())  # chunks change what some runs train
    augment = resolved.augment_settings()
    if augment:  # one recipe, however --augment was spelt (as the run folder)
        identity["extra"] = {k: v for k, v in identity["extra"].items() if k not in AUGMENT_FLAGS}
        identity.update(augment)
    # a random-start run made since initialisations have their own generators records it (resolved)
    identity.update({k: v for k, v in (written.get("resolved") or {}).items() if k in INIT_SEEDING})
    location = (written.get("data") or {}).get("location")
    if location:  # the same flags on two datasets are two settings
        identity["data_location"] = location
    results, status, done = None, "started", 0
    try:
        results = json.loads((path / "results.json").read_text())
    except (OSError, ValueError):
        pass
    if results is not None and results.get("epochs") == config["epochs"]:
        status, done = "finished", config["epochs"]
    else:
        results = None
        if (path / "ckpt.pth").is_file():
            status = "partial"
            try:
                done = sum(1 for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip())
            except OSError:
                pass
    return Run(
        path, config["method"], config["dataset"], config["network"], int(config["seed"]),
        json.dumps(identity, sort_keys=True, default=str), int(config["epochs"]), status, results, done,
        random_weights=has_random_weights(config),
    )  # fmt: skip


def has_random_weights(config: dict) -> bool:
    """Whether a run's network was randomly initialised: CLIP with ``--clip-pretrained none`` and no weights file."""
    extra = config.get("extra") or {}
    return str(extra.get("clip_pretrained", "")).lower() == "none" and not (extra.get("clip_weights") or config.get("weights"))


def collect_runs(root: Path) -> list[Run]:
    """Every run folder below ``root`` (folders holding a config.json)."""
    # hidden folders hold a run that --overwrite is replacing
    found = [p for p in sorted(Path(root).rglob("config.json")) if not any(part.startswith(".") for part in p.relative_to(root).parts)]
    runs = [read_run(p.parent) for p in found]
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


# ---------------------------------------------------------------------------------------------
# Paper numbers


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


# ---------------------------------------------------------------------------------------------
# Cells


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
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.setting, []).append(run)

    def rank(setting: str) -> tuple[int, float]:
        members = groups[setting]
        return sum(r.status == "finished" for r in members), max(r.path.stat().st_mtime for r in members)

    best = max(groups, key=rank)
    return groups[best], len(groups) - 1


def build_cells(
    runs: list[Run],
    expected: list[tuple[str, str, str]] | None,
    seeds: list[int] | None,
    protocol: str = "auto",
    clip: bool = False,
    compare: dict[str, str] | None = None,
) -> dict[tuple[str, str, str], Cell]:
    """(dataset, network, method) -> Cell. ``expected`` lists the cells that must appear (all
    found ones otherwise); ``seeds`` the seeds each needs (default: every seed seen); ``compare``
    maps a network to the paper network whose numbers go beside it."""
    by_cell: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        network = CLIP_COLUMN if clip else run.network
        by_cell.setdefault((run.dataset, network, run.method), []).append(run)
    keys = list(expected) if expected is not None else sorted(by_cell)
    chosen = {key: choose_setting(by_cell[key]) for key in keys if key in by_cell}
    if seeds is None:
        seeds = sorted({r.seed for members, _ in chosen.values() for r in members})
    paper = load_paper()
    cells = {}
    for key in keys:
        members, others = chosen.get(key, ([], 0))
        members = [r for r in members if r.seed in seeds]
        cell = Cell(*key, expected_seeds=list(seeds), other_settings=others, paper=paper.get((key[0], (compare or {}).get(key[1], key[1]), key[2])))
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
    return cells


# ---------------------------------------------------------------------------------------------
# Layout


def _order(values, preferred) -> list:
    rank = {v: i for i, v in enumerate(preferred)}
    return sorted(set(values), key=lambda v: (rank.get(v, len(rank)), str(v)))


def layout(cells: dict[tuple[str, str, str], Cell]) -> tuple[list[str], list[tuple[str, str]]]:
    rows = _order([k[0] for k in cells], TABLE1_DATASETS + CLIP_DATASETS)
    networks = _order([k[1] for k in cells], TABLE1_NETWORKS + (CLIP_COLUMN,))
    methods = _order([k[2] for k in cells], CNN_METHODS + CLIP_METHODS)
    columns = [(n, m) for n in networks for m in methods if any(k[1] == n and k[2] == m for k in cells)]
    return rows, columns


def best_methods(cells: dict, dataset: str, columns: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Per network, the method(s) with the highest mean in this row (runs on pretrained weights only, where there are any)."""
    best = set()
    for network in {n for n, _ in columns}:
        present = [cells[(dataset, n, m)] for n, m in columns if n == network and (dataset, n, m) in cells]
        if any(not c.random_weights and c.mean is not None for c in present):
            present = [c for c in present if not c.random_weights]  # a random network is not in the race
        scored = [(c.mean, (c.network, c.method)) for c in present if c.mean is not None]
        if scored:
            top = max(v for v, _ in scored)
            best |= {c for v, c in scored if round(v, 1) == round(top, 1)}
    return best


def format_cell(cell: Cell | None, bold: bool) -> str:
    if cell is None:
        return ""
    paper = "" if cell.paper is None else f" / {cell.paper[0]:.1f}"
    if cell.mean is None:
        return f"–{paper}"
    ours = f"{cell.mean:.1f}" + (f" ± {cell.std:.1f}" if cell.std is not None else "")
    if bold:
        ours = f"**{ours}**"
    count = f"({cell.n})" if cell.complete else f"({cell.n}/{len(cell.expected_seeds)})!"
    dagger = "†" if cell.protocol == "val" else ""
    random = RANDOM_MARK if cell.random_weights else ""
    return f"{ours}{dagger}{random} {count}{paper}"


def markdown(cells: dict[tuple[str, str, str], Cell], title: str = "", compare: dict[str, str] | None = None) -> str:
    rows, columns = layout(cells)
    head = ["Dataset"] + [f"{NETWORK_NAMES.get(n, n)} {METHOD_NAMES.get(m, m)}" for n, m in columns]
    lines = [f"### {title}", ""] if title else []
    seeds = sorted({s for c in cells.values() for s in c.expected_seeds})
    protocols = {c.protocol for c in cells.values() if c.values}
    lines += [
        f"Test accuracy (%), ours: mean ± std (sample) over seeds {', '.join(map(str, seeds)) or '–'} "
        "(number of finished seeds; `(n/N)!` = seeds missing), then ` / ` the paper's mean. "
        "Bold: best method per network in the row. "
        + "".join(f"Paper numbers beside {n} are the paper's {NETWORK_NAMES.get(p, p)}. " for n, p in (compare or {}).items())
        + ("Protocol: the best epoch's test accuracy, as in the paper." if protocols <= {"best"} else
           "Protocol: best epoch on test as in the paper; † = epoch chosen on the validation split."
           if "val" in protocols else f"Protocol: {', '.join(sorted(protocols))} test accuracy.")
        + (" The paper's CLIP numbers are ViT-B/32's." if any(n == CLIP_COLUMN for n, _ in columns) else "")
        + (f" {RANDOM_NOTE}" if any(c.random_weights for c in cells.values()) else ""),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]  # fmt: skip
    for dataset in rows:
        bold = best_methods(cells, dataset, columns)
        entries = [format_cell(cells.get((dataset, n, m)), (n, m) in bold) for n, m in columns]
        lines.append("| " + " | ".join([dataset] + entries) + " |")
    problems = missing_report(cells)
    lines += ["", f"Missing or incomplete runs: {len(problems) or 'none'}"]
    lines += [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"


def missing_report(cells: dict[tuple[str, str, str], Cell]) -> list[str]:
    out = []
    rows, columns = layout(cells)
    for (dataset, network, method) in [(d, n, m) for d in rows for n, m in columns if (d, n, m) in cells]:
        cell = cells[(dataset, network, method)]
        name = f"{method} / {dataset} / {network}"
        pending = {r.seed for r in cell.incomplete}
        absent = [s for s in cell.missing_seeds if s not in pending]
        if absent:
            out.append(f"{name}: no run for seed{'s' if len(absent) > 1 else ''} {', '.join(map(str, absent))}")
        for run in sorted(cell.incomplete, key=lambda r: r.seed):
            what = (
                f"{run.epochs_done}/{run.epochs} epochs" if run.status == "partial" else
                "no checkpoint yet (failed or running)" if run.status == "started" else
                f"no {PROTOCOLS[cell.protocol]} in results.json"
            )  # fmt: skip
            out.append(f"{name}: seed {run.seed} incomplete, {what} ({run.path})")
        if cell.other_settings:
            out.append(f"{name}: {cell.other_settings} other setting(s) found and not used; choose with --where KEY=VALUE")
    return out


def to_csv(cells: dict[tuple[str, str, str], Cell]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["dataset", "network", "method", "protocol", "n", "expected", "mean", "std", "seeds", "missing_seeds", "paper_mean", "paper_std", "random_weights"])
    rows, columns = layout(cells)
    for dataset in rows:
        for network, method in columns:
            cell = cells.get((dataset, network, method))
            if cell is None:
                continue
            fmt = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
            writer.writerow([
                dataset, network, method, {"best": "best_epoch_on_test", "final": "final_epoch", "val": "val_selected"}[cell.protocol],
                cell.n, len(cell.expected_seeds), fmt(cell.mean), fmt(cell.std),
                " ".join(map(str, sorted(cell.values))), " ".join(map(str, cell.missing_seeds)),
                "" if cell.paper is None else cell.paper[0], "" if cell.paper is None or cell.paper[1] is None else cell.paper[1],
                int(cell.random_weights),
            ])  # fmt: skip
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Comparison presets: one row per configuration

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
        epochs = json.loads((p.run_dir / "results.json").read_text()).get("epochs") if (p.run_dir / "results.json").is_file() else None
        if epochs is None or run_status(p.run_dir, epochs) != "finished" or p.status != "finished":
            cell.missing.append(f"{p.job.variant} / {p.job.dataset}: seed {p.job.seed} {p.status} ({p.run_dir})")
            continue
        results = json.loads((p.run_dir / "results.json").read_text())
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


# ---------------------------------------------------------------------------------------------
# Command line


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


def build_cli() -> argparse.ArgumentParser:
    p = tool_parser("Tables from run folders, beside the paper's numbers.")
    p.add_argument("results", nargs="?", default=None, metavar="RESULTS", help=f"results root, or --results-path (default: {cfg.RESULTS_PATH})")
    p.add_argument("--results-path", default=None, metavar="DIR", help="the results root, as the other tools name it (default: RESULTS)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="the grid that must be present (lists what is missing) (default: none)")
    p.add_argument("--clip", action="store_true", help="CLIP table: one column per method, any network (implied by --preset clip)")
    p.add_argument("--datasets", nargs="+", metavar="NAME", help="only these rows (default: every dataset found)")
    p.add_argument("--networks", nargs="+", metavar="NAME", help="only these networks (default: every network found)")
    p.add_argument("--methods", nargs="+", metavar="NAME", help="only these methods (default: every method found)")
    p.add_argument("--variants", nargs="+", metavar="LABEL", help="a comparison preset (beyond): only these configurations (default: all)")
    p.add_argument("--data-path", default=None, metavar="DIR", help="a comparison preset: the data root shown in its commands, as given to reproduce.py (default: none)")
    p.add_argument("--seeds", nargs="+", type=int, metavar="S", help="seeds every cell needs (default: the preset's, else every seed found)")
    p.add_argument("--where", nargs="+", default=[], metavar="KEY=VALUE", help="only runs whose config has these values, e.g. epochs=5 (default: all runs)")
    p.add_argument("--protocol", choices=["auto", "best", "final", "val"], default="auto",
                   help="auto: val-selected where every run has it, else best epoch on test (the paper)")  # fmt: skip
    p.add_argument("--compare-network", nargs="+", default=[], metavar="NET=PAPER_NET",
                   help="show the paper's numbers of PAPER_NET beside NET, e.g. efficientnet_lite0=resnet18 (default: none)")  # fmt: skip
    p.add_argument("--title", default="", help="a heading above the table (default: none)")
    output = p.add_argument("-o", "--output", default=None, metavar="STEM", help="also write STEM.md and STEM.csv (default: print only)")
    add_hidden_alias(p, output, "--out")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_cli().parse_args(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = args.results_path or args.results
    root = Path(results).expanduser() if results else cfg.RESULTS_PATH
    if not root.is_dir():
        print(f"error: results folder {root} does not exist", file=sys.stderr)
        return 2
    if args.preset and PRESETS[args.preset].variants:
        cells = variant_cells(args.preset, root, args.datasets, args.variants, args.seeds, args.data_path)
        text = variant_markdown(args.preset, cells, args.title)
        return emit(text, variant_csv(cells), args.output)
    clip = args.clip or args.preset == "clip"
    where = parse_where(args.where)
    runs = [
        r for r in collect_runs(root)
        if matches(r, where)
        and (not args.datasets or r.dataset in args.datasets)
        and (not args.methods or r.method in args.methods)
        and (clip or not args.networks or r.network in args.networks)
    ]  # fmt: skip
    expected = expected_cells(args.preset, args.datasets, args.networks, args.methods) if args.preset else None
    seeds = args.seeds or (list(PRESETS[args.preset].seeds) if args.preset else None)
    compare = parse_where(args.compare_network)
    cells = build_cells(runs, expected, seeds, args.protocol, clip=clip, compare=compare)
    if not cells:
        print(f"error: no runs found under {root}" + (" matching --where" if where else ""), file=sys.stderr)
        return 2
    return emit(markdown(cells, args.title, compare), to_csv(cells), args.output)


def emit(text: str, table_csv: str, out: str | None) -> int:
    print(text, end="")
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".md").write_text(text)
        path.with_suffix(".csv").write_text(table_csv)
        print(f"wrote {path.with_suffix('.md')} and {path.with_suffix('.csv')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
