"""``tools/make_table.py``'s command line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cfg
from common.errors import UserError
from runner.config import add_hidden_alias, tool_parser
from tools.sweep.presets import PRESETS
from tools.tables.cells import build_cells, expected_cells
from tools.tables.paper_table import markdown, to_csv
from tools.tables.runs import collect_runs, matches, parse_where, protocol_epochs
from tools.tables.variants import variant_cells, variant_csv, variant_markdown


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
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="the protocol's epochs: cells of another budget are marked (default: a preset's method recipes, else the budget most runs have)")  # fmt: skip
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
    epochs = args.epochs or ({m: protocol_epochs(m) for m in PRESETS[args.preset].methods} if args.preset else None)
    cells = build_cells(runs, expected, seeds, args.protocol, clip=clip, compare=compare, epochs=epochs)
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
