"""``tools/plots.py``'s command line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.errors import UserError
from runner.config import HelpFormatter, add_hidden_alias, tool_parser
from tools.figures.common import PlotError
from tools.figures.run_figures import plot_curves, plot_heatmap, plot_mapping, plot_prompts
from tools.figures.sweep_figures import plot_fraction, plot_gain
from tools.tables.runs import parse_where


def build_cli() -> argparse.ArgumentParser:
    p = tool_parser("The paper's figures as PNGs from run folders.")
    sub = p.add_subparsers(dest="figure", required=True, metavar="FIGURE")

    def command(name: str, help: str, many: bool = False):
        s = sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)
        what = "results root" if name in ("gain", "fraction") else "run folder(s)" if many else "run folder"
        s.add_argument("source", nargs="+" if many else None, type=Path, metavar="RESULTS" if name in ("gain", "fraction") else "RUN", help=what)
        output = s.add_argument("-o", "--output", type=Path, default=None, metavar="FILE", help="PNG file to write (required)")
        add_hidden_alias(s, output, "--out")
        return s

    s = command("prompts", "learned prompt pattern over epochs")
    s.add_argument("--epochs", nargs="+", type=int, metavar="E", help="epochs to show (default: up to --max, spread evenly)")
    s.add_argument("--max", type=int, default=8, metavar="N", help="most epochs shown")
    s.add_argument("--raw", action="store_true", help="no contrast stretch")
    for name, what in (("mapping", "source class"), ("text-prompts", "text prompt")):
        s = command(name, f"{what} chosen for each target class over epochs")
        s.add_argument("--targets", nargs="+", metavar="CLASS", help="target class names (default: those that changed most)")
        s.add_argument("--epochs", nargs="+", type=int, metavar="E", help="epochs to show (default: up to --max-epochs, spread evenly)")
        s.add_argument("--max-targets", type=int, default=4, metavar="N", help="most target classes shown")
        s.add_argument("--max-epochs", type=int, default=10 if name == "mapping" else 6, metavar="N", help="most epochs shown")
    command("curves", "training loss and mapping changes against epochs", many=True)
    for name in ("gain", "fraction"):
        s = command(name, "ILM-VP minus FLM-VP per dataset, mean and std over seeds" if name == "gain" else "accuracy against training-data fraction")
        s.add_argument("--network", metavar="NAME", help="only runs of this network (default: every network, one bar each)")
        s.add_argument("--where", nargs="+", default=[], metavar="KEY=VALUE", help="only runs with these config values (default: all runs)")
        if name == "gain":
            s.add_argument("--seeds", nargs="+", type=int, metavar="S", help="seeds every bar needs (default: every seed found)")
            s.add_argument("--compare-network", nargs="+", default=[], metavar="NET=PAPER_NET",
                           help="put the paper's PAPER_NET numbers beside NET, named as such (default: the paper's numbers of the same network, if any)")  # fmt: skip
        else:
            s.add_argument("--dataset", required=True, metavar="NAME", help="the dataset of the runs")
            s.add_argument("--methods", nargs="+", default=["ilm_vp", "flm_vp"], metavar="NAME", help="one line each")
    s = command("heatmap", "share of each target class's test predictions per source class")
    s.add_argument("--epoch", type=int, help="the epoch shown (default: the last with counts)")
    s.add_argument("--targets", type=int, default=10, metavar="N", help="first N target classes")
    s.add_argument("--frequent", type=int, default=5, metavar="N", help="most frequent other source classes shown")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_cli().parse_args(argv)
        if args.output is None:
            raise UserError("the following arguments are required: -o/--output (see --help)")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        sources = args.source if isinstance(args.source, list) else [args.source]
        for source in sources:
            if not source.is_dir():
                raise PlotError(f"{source} is not a folder")
        if args.figure == "prompts":
            out = plot_prompts(args.source, args.output, args.epochs, args.max, contrast=not args.raw)
        elif args.figure in ("mapping", "text-prompts"):
            text = args.figure == "text-prompts"
            out = plot_mapping(args.source, args.output, args.targets, args.epochs, args.max_targets, args.max_epochs,
                               wrap=24 if text else 14, what="text prompt" if text else "source class")  # fmt: skip
        elif args.figure == "curves":
            out = plot_curves(args.source, args.output)
        elif args.figure == "gain":
            out = plot_gain(args.source, args.output, args.network, parse_where(args.where), parse_where(args.compare_network), args.seeds)
        elif args.figure == "fraction":
            out = plot_fraction(args.source, args.output, args.dataset, args.network, tuple(args.methods), parse_where(args.where))
        else:
            out = plot_heatmap(args.source, args.output, args.epoch, args.targets, args.frequent)
    except PlotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}", file=sys.stderr)
    return 0
