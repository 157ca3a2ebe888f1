"""The end of a search: the chosen configuration on several seeds, its comparison, figures.

The configuration is the completed trial with the highest validation accuracy (Optuna's best
trial; the test split played no part). It is run on ``--final-seeds`` seeds (the first is the
trial's own run, read rather than retrained), and its *validation-selected* test accuracy (the
test accuracy at the epoch of best validation accuracy) is read from each run's
``results.json``: the first time the search looks at a test number. Beside it: linear probing
on the same data and budget, and the best fixed configuration of docs/beyond.md when that
comparison's runs for the same data and budget are in the results folder.
"""
from __future__ import annotations

import json
import shlex
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.errors import UserError
from tools.config_search.space import TrialPlan
from tools.config_search.trial import TrialFailed, TrialRunner
from tools.sweep.jobs import expand_variants, plan
from tools.sweep.presets import BEYOND_DATASETS, PRESETS
from tools.tables.variants import variant_cells

FIXED_PRESET = "beyond"


@dataclass
class Row:
    """One configuration of the final table, one entry per seed."""

    label: str
    val_selected: dict[int, float] = field(default_factory=dict)  # seed -> validation-selected test accuracy
    best_val: dict[int, float] = field(default_factory=dict)  # seed -> best validation accuracy
    run_dirs: dict[int, str] = field(default_factory=dict)
    command: str = ""
    note: str = ""

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.val_selected.values()) if self.val_selected else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.val_selected.values()) if len(self.val_selected) > 1 else None

    def cell(self) -> str:
        if self.mean is None:
            return "–"
        return f"{self.mean:.1f}" + (f" ± {self.std:.1f}" if self.std is not None else "")


def run_row(label: str, runner: TrialRunner, trial_plan: TrialPlan, seeds: list[int], log: str) -> Row:
    """Train (or read) ``trial_plan`` on every seed; a failed seed is noted and skipped."""
    row = Row(label)
    for seed in seeds:
        try:
            spec = runner.spec(trial_plan, seed)
            row.command = row.command or spec.shell
            print(f"{label}, seed {seed}: {spec.shell}", file=sys.stderr, flush=True)
            results = runner.run(spec, None, log_name=f"{log}_seed{seed}")
        except (UserError, TrialFailed) as exc:
            row.note += f"seed {seed} failed: {exc}. "
            continue
        row.run_dirs[seed] = str(spec.run_dir)
        if results.get("val_selected_test_acc") is not None:
            row.val_selected[seed] = float(results["val_selected_test_acc"])
            row.best_val[seed] = float(results["best_val_acc"])
        elif results.get("val_acc") is not None:  # a method solved in one go (no epochs): one validation number
            row.val_selected[seed] = float(results["final_test_acc"])
            row.best_val[seed] = float(results["val_acc"])
    return row


def fixed_row(runner: TrialRunner, dataset: str, data_path: str | None, seeds: list[int], lp_plan: TrialPlan) -> Row:
    """The best fixed configuration of docs/beyond.md, by mean validation-selected test accuracy
    (the row that table reports as best, so the comparison favours the fixed side), if its runs
    are here for the same data and budget: the same linear-probing folder proves both."""
    label = f"best fixed configuration ({FIXED_PRESET} preset)"
    if dataset not in BEYOND_DATASETS:
        return Row(label, note=f"not available: docs/beyond.md compares on {', '.join(BEYOND_DATASETS)} only")
    preset = PRESETS[FIXED_PRESET]
    theirs = plan(expand_variants(preset, [dataset], None, seeds[:1], ["linear_probing"]), runner.results, data_path=data_path)[0].run_dir
    ours = runner.spec(lp_plan, seeds[0]).run_dir
    if theirs != ours:
        return Row(label, note=f"not available: the {FIXED_PRESET} preset's runs use other data, network or budget flags ({shlex.join(preset.common_flags)})")
    cells = variant_cells(FIXED_PRESET, runner.results, [dataset], [v.label for v in preset.variants if not v.reference], seeds, data_path)
    done = {k: c for k, c in cells.items() if len(c.val) == len(seeds)}
    if not done:
        command = f"python tools/reproduce.py --preset {FIXED_PRESET} --datasets {dataset} --seeds {' '.join(map(str, seeds))}"
        return Row(label, note=f"not available: no configuration of the {FIXED_PRESET} preset finished these seeds here ({command})")
    cell = max(done.values(), key=lambda c: statistics.fmean(c.val.values()))
    return Row(f"best fixed configuration: {cell.variant}", dict(cell.val), command=shlex.join(cell.command),
               note=f"best of {len(done)} fixed configurations of docs/beyond.md by mean validation-selected test accuracy")  # fmt: skip


def markdown(rows: list[Row], best, seeds: list[int], command: str, counts: dict[str, int]) -> str:
    lines = [
        f"# Search result: {best.user_attrs.get('method')} {shlex.join(best.user_attrs.get('flags', []))}",
        "",
        f"Chosen: trial {best.number}, validation accuracy {best.value:.2f}% (of {sum(counts.values())} trials: "
        + ", ".join(f"{n} {state.lower()}" for state, n in counts.items() if n) + ").",
        "",
        f"Validation-selected test accuracy (%), mean ± std over seeds {', '.join(map(str, seeds))}:",
        "",
        "| configuration | seeds | val-selected test accuracy | per seed | note |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        per_seed = ", ".join(f"{s}: {v:.2f}" for s, v in sorted(row.val_selected.items())) or "–"
        lines.append(f"| {row.label} | {len(row.val_selected)} | {row.cell()} | {per_seed} | {row.note.strip()} |")
    lines += ["", "Commands:", ""] + [f"- {row.label}: `{row.command}`" for row in rows if row.command]
    lines += ["", "Made by:", "", f"    {command}", ""]
    return "\n".join(lines)


def final_stage(study, runner: TrialRunner, args, study_dir: Path, storage: str, argv: list[str]) -> Path:
    try:
        best = study.best_trial
    except ValueError as exc:
        raise UserError(f"no trial of study {study.study_name} completed; see {study_dir / 'logs'}") from exc
    seeds = list(range(args.trial_seed, args.trial_seed + args.final_seeds))
    chosen = TrialPlan(best.user_attrs["method"], tuple(best.user_attrs["flags"]), dict(best.params))
    rows = [run_row(f"searched: {', '.join(f'{k}={v}' for k, v in best.params.items())}", runner, chosen, seeds, "final")]
    lp_plan = TrialPlan("linear_probing", ())
    try:
        rows.append(fixed_row(runner, args.dataset, args.data_path, seeds, lp_plan))
    except UserError as exc:
        rows.append(Row("best fixed configuration", note=f"not available: {exc}"))
    if not args.no_linear_probe:
        rows.append(run_row("linear probing (reference)", runner, lp_plan, seeds, "linear_probing"))
    counts = {s: 0 for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    command = shlex.join([sys.executable, "tools/search.py", *argv])
    report = study_dir / "report.md"
    report.write_text(markdown(rows, best, seeds, command, counts))
    (study_dir / "report.json").write_text(json.dumps({
        "study": study.study_name, "storage": storage, "command": command, "seeds": seeds,
        "best_trial": {"number": best.number, "validation": best.value, "params": best.params, "command": best.user_attrs.get("command")},
        "rows": [{**asdict(r), "mean": r.mean, "std": r.std} for r in rows], "trials": counts,
    }, indent=2, default=str))  # fmt: skip
    figures(study, study_dir)
    print(report.read_text(), file=sys.stderr)
    return report


def figures(study, out: Path) -> None:
    """Optimisation history, parameter importances and the best validation accuracy of each
    prompt x mapping, as PNGs beside the study (validation numbers only)."""
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's matplotlib plots are marked experimental
        values = {t.value for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"}
        for name, plot in (("history", ovm.plot_optimization_history), ("importances", ovm.plot_param_importances)):
            if name == "importances" and len(values) < 2:  # fANOVA on one value gives equal, meaningless shares
                (out / f"{name}.txt").write_text("no figure: fewer than two distinct validation accuracies among the completed trials\n")
                continue
            try:
                ax = plot(study)
                ax.figure.tight_layout()
                ax.figure.savefig(out / f"{name}.png", dpi=120)
                plt.close(ax.figure)
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # too few or constant trials
                (out / f"{name}.txt").write_text(f"no figure: {exc}\n")
    prompt_mapping_figure(study, out / "prompt_mapping.png")


def prompt_mapping_cells(trials) -> tuple[list[str], list[str], dict, dict]:
    """Per prompt x mapping: the best validation accuracy of its completed trials, and for pairs
    with pruned trials their best reported validation accuracy and the last epoch reached."""
    tried = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED") and "prompt" in t.params]
    prompts = sorted({t.params["prompt"] for t in tried})
    mappings = sorted({t.params["mapping"] for t in tried})
    complete: dict[tuple[str, str], float] = {}
    pruned: dict[tuple[str, str], tuple[float, int]] = {}
    for t in tried:
        cell = (t.params["prompt"], t.params["mapping"])
        if t.state.name == "COMPLETE":
            complete[cell] = max(complete.get(cell, t.value), t.value)
        elif t.intermediate_values:
            value, epoch = max(t.intermediate_values.values()), max(t.intermediate_values)
            seen = pruned.get(cell, (value, epoch))
            pruned[cell] = (max(value, seen[0]), max(epoch, seen[1]))
    return prompts, mappings, complete, pruned


def prompt_mapping_figure(study, path: Path) -> None:
    """Colour: the best validation accuracy of a completed trial of each prompt x mapping. A pair
    only ever pruned is not coloured (its number is from fewer epochs) but written in grey with
    the last epoch it reached, so a tried pair never looks untried."""
    import matplotlib.pyplot as plt
    import numpy as np

    prompts, mappings, complete, pruned = prompt_mapping_cells(study.get_trials(deepcopy=False))
    if not prompts:
        return
    grid = np.full((len(prompts), len(mappings)), np.nan)
    for (prompt, mapping), value in complete.items():
        grid[prompts.index(prompt), mappings.index(mapping)] = value
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(mappings) + 2.5), 0.6 * len(prompts) + 2.2))
    image = ax.imshow(grid, cmap="viridis", vmin=min(complete.values(), default=0), vmax=max(complete.values(), default=100))
    ax.set_xticks(range(len(mappings)), mappings)
    ax.set_yticks(range(len(prompts)), prompts)
    for i, prompt in enumerate(prompts):
        for j, mapping in enumerate(mappings):
            if (prompt, mapping) in complete:
                ax.text(j, i, f"{complete[(prompt, mapping)]:.1f}", ha="center", va="center", color="w")
            elif (prompt, mapping) in pruned:
                value, epoch = pruned[(prompt, mapping)]
                ax.text(j, i, f"{value:.1f}\npruned @{epoch}", ha="center", va="center", color="0.45", fontsize=7)
    ax.set_title("best validation accuracy (%) per prompt x mapping\ncoloured: completed trials; grey: only pruned (epoch reached)", fontsize=9)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
