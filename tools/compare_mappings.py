#!/usr/bin/env python
"""Compare label mappings (and prompts) on one task: same data, epochs and seeds for every cell.

Runs ``{prompts} x {mappings} x {seeds}`` through the ordinary method entry point, one run at a
time, and writes a Markdown table of final test accuracy, mean +- sample std over seeds, with the
per-seed numbers and a plain statement of where BLM / BLM+ do and do not beat ILM. Finished runs
(``results.json`` present) are reused and interrupted ones resumed, so the command can simply be
started again.

    python tools/compare_mappings.py --network efficientnet_lite0 --dataset cifar10 \\
        --data-path /work/shared/datasets --max-train-samples 2000 --max-test-samples 1000 \\
        --epochs 2 --seeds 1 2 3 --output docs/mapping_comparison.md

Flags after ``--`` go to every run unchanged (e.g. ``-- --lr 0.01 --batch-size 64``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from algorithms.mappings import MAPPING_CHOICES  # noqa: E402
from algorithms.methods import METHODS  # noqa: E402
from common.errors import UserError  # noqa: E402
from data.registry import DATASETS  # noqa: E402
from models.networks import NETWORKS  # noqa: E402
from models.prompts import PROMPT_CHOICES  # noqa: E402
from runner.cli import main as run_method  # noqa: E402
from runner.config import name_type, tool_parser  # noqa: E402
from runner.records import read_finished  # noqa: E402
from tools.sweep.jobs import FINISHED, PARTIAL, method_config, run_status  # noqa: E402

DEFAULT_MAPPINGS = ["ilm", "flm", "rlm", "blm", "blmplus", "linear"]
DEFAULT_PROMPTS = ["pad", "watermark"]
TRAINED_HEAD = {"linear"}  # mappings that train parameters: a separate track


def method_for(mapping: str) -> tuple[str, list[str]]:
    """The named script of a mapping (``blm`` -> ``blm_vp``), else ``ilm_vp --mapping NAME``."""
    name = f"{mapping}_vp"
    if name in METHODS and METHODS[name].defaults.get("mapping") == mapping:
        return name, []
    return "ilm_vp", ["--mapping", mapping]


def run_cell(method: str, argv: list[str], report_only: bool = False) -> dict | None:
    """Run (or reuse, or resume) one configuration; returns its results.json.

    With ``report_only`` nothing runs: an unfinished configuration returns None.
    """
    config = method_config(method, argv)
    path = config.run_path()
    status = run_status(path, config.epochs)
    if status != FINISHED:
        if report_only:
            return None
        resume = ["--resume"] if status == PARTIAL else []
        code = run_method(method, argv + resume)
        if code != 0:
            raise SystemExit(f"error: {method} {' '.join(argv)} exited with {code}")
    return read_finished(path)


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def verdicts(table: dict[tuple[str, str], list[float]], prompts: list[str], mappings: list[str]) -> list[str]:
    """One line per (BLM variant, prompt): does it beat ILM on the mean, and by more than the spread?"""
    lines = []
    for variant in ("blm", "blmplus"):
        for prompt in prompts:
            ours, ilm = table.get((prompt, variant)), table.get((prompt, "ilm"))
            if variant not in mappings or "ilm" not in mappings or not ours or not ilm:
                continue
            gap = statistics.mean(ours) - statistics.mean(ilm)
            spread = max(statistics.stdev(ours) if len(ours) > 1 else 0.0, statistics.stdev(ilm) if len(ilm) > 1 else 0.0)
            label = "BLM" if variant == "blm" else "BLM+"
            if gap > 0:
                size = "within one standard deviation" if gap <= spread else "more than one standard deviation"
                lines.append(f"- {prompt}: {label} beats ILM by {gap:.2f} points ({size}).")
            else:
                lines.append(f"- {prompt}: {label} does **not** beat ILM ({-gap:.2f} points lower or equal).")
    return lines


def write_report(path: Path, args, rows: list[dict], missing: list[str] = ()) -> None:
    table: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        table.setdefault((row["prompt"], row["mapping"]), []).append(row["final_test_acc"])
    sizes = rows[0]["data_sizes"] if rows else {}
    command = "python tools/compare_mappings.py " + " ".join(sys.argv[1:])
    out = [
        "# Label mappings compared",
        "",
        f"Final test accuracy (%) after {args.epochs} epochs, mean ± sample standard deviation over seeds "
        f"{', '.join(map(str, args.seeds))}. Network `{args.network}`, dataset `{args.dataset}` "
        f"({sizes.get('train', '?')} train / {sizes.get('test', '?')} test images, class-balanced subset with --subset-seed 0); "
        "every cell uses the method's paper defaults otherwise (Adam, lr 0.01, multistep decay at 50% and 72% of the epochs).",
        "Watermark runs use random crop + horizontal flip on training images; padding runs do not "
        "(the default of `--augment`). `linear` trains a head over the source logits and is a separate track.",
        "",
        "| mapping | " + " | ".join(args.prompts) + " |",
        "|---|" + "---|" * len(args.prompts),
    ]
    for mapping in args.mappings:
        name = f"{mapping} (trained head)" if mapping in TRAINED_HEAD else mapping
        out.append(f"| {name} | " + " | ".join(mean_std(table.get((p, mapping), [])) for p in args.prompts) + " |")
    out += ["", "BLM and BLM+ against ILM (same prompt, same seeds):", ""]
    out += verdicts(table, args.prompts, args.mappings) or ["- (ILM or BLM not in the grid)"]
    out += ["", "Per seed:", "", "| prompt | mapping | seed | final | best | epochs | seconds |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        out.append(
            f"| {row['prompt']} | {row['mapping']} | {row['seed']} | {row['final_test_acc']:.2f} | {row['best_test_acc']:.2f}"
            f" | {row['epochs']} | {row['total_seconds']:.0f} |"
        )
    if missing:
        out += ["", f"Not finished, so not in the table ({len(missing)}): " + "; ".join(missing) + "."]
    run_minutes = sum(row["total_seconds"] for row in rows) / 60
    out += ["", f"Command (training and evaluation time of all runs: {run_minutes:.1f} min; device `{args.device}`):", "", f"    {command}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out))


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = sys.argv[1:] if argv is None else argv
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    return build_cli().parse_args(argv), passthrough


def build_cli() -> argparse.ArgumentParser:
    p = tool_parser(__doc__.split("\n\n")[0] + " Flags after -- go to every run.")
    p.add_argument("--network", type=name_type(NETWORKS), default="efficientnet_lite0", metavar="NAME", help=NETWORKS.help("source network"))
    p.add_argument("--dataset", type=name_type(DATASETS), default="cifar10", metavar="NAME", help=DATASETS.help("target dataset"))
    p.add_argument("--data-path", default=None, metavar="DIR", help="data root (default: VP_DATA)")
    p.add_argument("--results-path", default=None, metavar="DIR", help="where the runs go (default: VP_RESULTS)")
    p.add_argument("--max-train-samples", type=int, default=2000, metavar="N", help="class-balanced training subset")
    p.add_argument("--max-test-samples", type=int, default=1000, metavar="N", help="class-balanced test subset")
    p.add_argument("--epochs", type=int, default=2, metavar="N", help="epochs of every run")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], metavar="S", help="training seeds of every cell")
    p.add_argument("--mappings", type=name_type(MAPPING_CHOICES), nargs="+", default=DEFAULT_MAPPINGS, metavar="NAME",
                   help=MAPPING_CHOICES.help("label mappings, the table's rows"))  # fmt: skip
    p.add_argument("--prompts", type=name_type(PROMPT_CHOICES), nargs="+", default=DEFAULT_PROMPTS, metavar="NAME",
                   help=PROMPT_CHOICES.help("CNN prompts, the table's columns"))  # fmt: skip
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("-o", "--output", default="docs/mapping_comparison.md", metavar="FILE", help="Markdown file to write")
    p.add_argument("--report-only", action="store_true", help="run nothing: tabulate the finished runs, list the others")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args, passthrough = parse(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    common = ["--network", args.network, "--dataset", args.dataset, "--epochs", str(args.epochs), "--device", args.device]
    common += ["--max-train-samples", str(args.max_train_samples), "--max-test-samples", str(args.max_test_samples)]
    for flag, value in (("--data-path", args.data_path), ("--results-path", args.results_path)):
        if value:
            common += [flag, value]
    rows, missing = [], []
    try:
        for prompt in args.prompts:
            for mapping in args.mappings:
                method, mapping_flags = method_for(mapping)
                for seed in args.seeds:
                    argv = common + mapping_flags + ["--prompt", prompt, "--seed", str(seed)] + passthrough
                    print(f"== {prompt} / {mapping} / seed {seed}", flush=True)
                    result = run_cell(method, argv, report_only=args.report_only)
                    if result is None:
                        missing.append(f"{prompt} / {mapping} / seed {seed}")
                    else:
                        rows.append({"prompt": prompt, "mapping": mapping, **result})
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_report(Path(args.output), args, rows, missing)
    print(Path(args.output).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
