"""The paper-layout table: rows are datasets, columns network x method, as Markdown and CSV."""
from __future__ import annotations

import csv
import io

from tools.sweep.presets import CLIP_DATASETS, CLIP_METHODS, CNN_METHODS, TABLE1_DATASETS, TABLE1_NETWORKS
from tools.tables.cells import CLIP_COLUMN, PROTOCOLS, Cell
from tools.tables.runs import setting_difference

METHOD_NAMES = {
    "ilm_vp": "ILM-VP", "flm_vp": "FLM-VP", "rlm_vp": "RLM-VP", "linear_probing": "LP", "full_finetune": "FF",
    "ilm_tp_vp": "VP+TP+LM", "single_tp_vp": "VP+TP",
}  # fmt: skip
NETWORK_NAMES = {"resnet18": "ResNet-18", "resnet50": "ResNet-50", "instagram": "ResNeXt-101-IG", CLIP_COLUMN: "CLIP"}
RANDOM_MARK = "‡"
RANDOM_NOTE = f"{RANDOM_MARK} = a randomly initialised network (no pretrained weights): a check of the code, not comparable with the paper."
DIFFERS_MARK = "§"
DIFFERS_NOTE = f"{DIFFERS_MARK} = runs on a subset of the data or with another epoch budget than the protocol (listed below the table)."


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
    differs = DIFFERS_MARK if cell.differences else ""
    return f"{ours}{dagger}{random}{differs} {count}{paper}"


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
        + (f" {RANDOM_NOTE}" if any(c.random_weights for c in cells.values()) else "")
        + (f" {DIFFERS_NOTE}" if any(c.differences and c.values for c in cells.values()) else ""),
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
    differing = differences_report(cells)
    if differing:
        lines += ["", f"{DIFFERS_MARK} Not the protocol's data or budget:"] + [f"- {d}" for d in differing]
    return "\n".join(lines) + "\n"


def differences_report(cells: dict[tuple[str, str, str], Cell]) -> list[str]:
    """One line per cell shown with a subset or another budget: what differs."""
    rows, columns = layout(cells)
    keys = [(d, n, m) for d in rows for n, m in columns if (d, n, m) in cells]
    return [f"{m} / {d} / {n}: {', '.join(cells[(d, n, m)].differences)}" for d, n, m in keys if cells[(d, n, m)].differences and cells[(d, n, m)].values]


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
                f"running, {run.epochs_done}/{run.epochs} epochs" if run.status == "running" else
                "no checkpoint yet (failed or running)" if run.status == "started" else
                f"no {PROTOCOLS[cell.protocol]} in results.json"
            )  # fmt: skip
            out.append(f"{name}: seed {run.seed} incomplete, {what} ({run.path})")
        if cell.other_setting_list:
            shown = "; ".join(setting_difference(cell.setting, other) for other in cell.other_setting_list)
            out.append(f"{name}: {len(cell.other_setting_list)} other setting(s) found and not used; the one shown (most finished runs) has {shown}; "
                       "choose with --where KEY=VALUE")  # fmt: skip
    return out


def to_csv(cells: dict[tuple[str, str, str], Cell]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["dataset", "network", "method", "protocol", "n", "expected", "mean", "std", "seeds", "missing_seeds", "paper_mean", "paper_std", "random_weights",
                     "differences"])  # fmt: skip
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
                int(cell.random_weights), "; ".join(cell.differences),
            ])  # fmt: skip
    return buffer.getvalue()
