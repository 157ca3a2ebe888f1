"""``tools/leaderboard.py``'s command line: plan every row under the protocol, run what is not finished, write the board."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
from pathlib import Path

import cfg
from common.errors import UserError
from runner.config import split_passthrough, tool_parser
from runner.provenance import git_commit
from runner.records import FINISHED
from tools.comparison.figures import pareto_figures
from tools.comparison.plan import Protocol, clip_weights_missing, plan_rows, row_jobs
from tools.comparison.rows import CLIP_ROWS, CNN_ROWS, search_row
from tools.comparison.table import FEWER_MARK, SUBSET_MARK, entries, machines, markdown, to_csv, to_json
from tools.sweep.cli import INTERRUPTED, add_launch_flags, dataset_label, dispatch
from tools.sweep.presets import BEYOND_DATASETS


def build_cli() -> argparse.ArgumentParser:
    p = tool_parser("Every CNN method, linear probing, full fine-tuning and the search's choice under one protocol; "
                    "writes leaderboard.md, .csv, .json and Pareto figures (docs/leaderboard.md). Flags after -- go to every run.")  # fmt: skip
    p.add_argument("--datasets", "--dataset", nargs="+", required=True, type=dataset_label, metavar="NAME",
                   help=f"datasets: registered names, or {', '.join(BEYOND_DATASETS)} (docs/beyond.md's data flags, as the search)")  # fmt: skip
    p.add_argument("--networks", "--network", nargs="+", default=["resnet18"], metavar="NAME", help="frozen CNNs (default: resnet18)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], metavar="S", help="training seeds (default: 1 2 3)")
    p.add_argument("--epochs", type=int, default=5, metavar="N", help="epochs of every row that trains epochs (default: 5)")
    p.add_argument("--val-fraction", type=float, default=0.1, metavar="F", help="validation split where the dataset has none; selection uses it (default: 0.1)")
    p.add_argument("--data-path", default=None, metavar="DIR", help="data root passed to every run (default: each run's VP_DATA)")
    p.add_argument("--results-path", default=None, metavar="DIR", help=f"results root of the runs (default: {cfg.RESULTS_PATH})")
    p.add_argument("--output", default=None, metavar="DIR", help="where leaderboard.md/.csv/.json and the figures go (default: <results>/leaderboard)")
    p.add_argument("--search-study", default=None, metavar="DIR", help="a finished search's folder (<results>/search/<study>): its best trial is a row (default: none)")
    p.add_argument("--search-config", default=None, metavar="'METHOD FLAGS'", help="the search's choice given by hand, e.g. 'ilm_vp --input-size 192 --mapping linear' (default: none)")
    p.add_argument("--rows", nargs="+", default=None, metavar="LABEL",
                   help="only these rows (default: all): " + "; ".join(r.label for r in (*CNN_ROWS, *CLIP_ROWS)))  # fmt: skip
    p.add_argument("--no-clip", action="store_true", help="leave the CLIP section out (by default it runs when the CLIP weights are on disk)")
    p.add_argument("--report-only", action="store_true", help="train nothing: the board from the finished runs")
    p.add_argument("--python", default=sys.executable, metavar="EXE", help="interpreter of the run commands (default: this one)")
    add_launch_flags(p, "leaderboard")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, extra = split_passthrough(argv)
    try:
        args = build_cli().parse_args(own)
        protocol = Protocol(tuple(args.datasets), tuple(args.networks), tuple(args.seeds), args.epochs, args.val_fraction, tuple(extra))
        protocol.check()
        results = Path(args.results_path).expanduser().resolve() if args.results_path else cfg.RESULTS_PATH
        rows = [r for r in CNN_ROWS if args.rows is None or r.label in args.rows]
        unknown = sorted(set(args.rows or ()) - {r.label for r in (*CNN_ROWS, *CLIP_ROWS)})
        if unknown:
            raise UserError(f"--rows: no row {', '.join(map(repr, unknown))}; see --help for the labels")
        chosen = search_row(args.search_study, args.search_config)
        rows += [chosen] if chosen else []
        planned = plan_rows(rows, protocol, results, args.python, args.data_path)
        notes = [] if chosen else ["search's choice: no row (give --search-study DIR or --search-config 'METHOD FLAGS')"]
        clip_planned = []
        if not args.no_clip:
            probe = row_jobs(CLIP_ROWS[0], protocol, (None,))[0]
            reason = clip_weights_missing(probe.method, probe.flags(results, args.data_path))
            if reason is None:
                clip_rows = [r for r in CLIP_ROWS if args.rows is None or r.label in args.rows]
                clip_planned = plan_rows(clip_rows, protocol, results, args.python, args.data_path, own_network=True)
            else:
                notes.append(f"CLIP section skipped: {reason}")
                print(f"CLIP section skipped: {reason}", file=sys.stderr)
        everything = planned + clip_planned
        todo = [p for p in everything if p.status != FINISHED]
        print(f"{len(everything)} runs: {len(everything) - len(todo)} finished (read), {len(todo)} to run", file=sys.stderr)
        failures = []
        if not args.report_only and (todo or args.launcher != "local"):
            failures = dispatch(everything, args, results, args.slurm_name or "leaderboard", then="; then run this command again with --report-only")
            if failures is None:
                return 0
        out = Path(args.output).expanduser() if args.output else results / "leaderboard"
        write_board(out, planned, clip_planned, rows, protocol, notes, argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    for p, code in failures:
        print(f"failed (exit {code}): {p.label} (log: {p.run_dir / 'launcher.log'})", file=sys.stderr)
    return 1 if failures else 0


def write_board(out: Path, planned, clip_planned, rows, protocol: Protocol, notes: list[str], argv: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    references = {r.label for r in rows if r.reference} | {"CLIP: linear probe"}
    found = entries(planned, protocol.epochs, references)
    clip_found = entries(clip_planned, protocol.epochs, references) if clip_planned else {}
    command = shlex.join(["python", "tools/leaderboard.py", *argv])
    text = "\n".join([
        "# Leaderboard", "",
        f"Protocol: datasets {', '.join(protocol.datasets)}; networks {', '.join(protocol.networks)}; seeds {' '.join(map(str, protocol.seeds))}; "
        f"{protocol.epochs} epochs; validation fraction {protocol.val_fraction:g}; each method with its registered recipe; the epoch chosen on "
        "validation only. ✝ best-on-test: the highest test accuracy over the epochs (the papers' protocol), beside it for reference, never for ranking. "
        f"Marks: {FEWER_MARK} fewer finished seeds than asked; {SUBSET_MARK} a subset of the data or another budget.", "",
        f"Made {dt.date.today().isoformat()} at commit {git_commit(short=True)} by:", "", f"    {command}", "",
        markdown(found), *(["## CLIP", "", markdown(clip_found)] if clip_found else []),
        *([f"- {n}" for n in notes] + [""] if notes else []),
        computed_on({**found, **clip_found}), "",
        "Missing runs: " + (str(sum(len(e.missing) for e in {**found, **clip_found}.values())) or "none"),
        *[f"- {e.row} / {e.dataset}: {m}" for e in {**found, **clip_found}.values() for m in e.missing], "",
    ])  # fmt: skip
    (out / "leaderboard.md").write_text(text)
    (out / "leaderboard.csv").write_text(to_csv({**found, **clip_found}))
    (out / "leaderboard.json").write_text(json.dumps({"command": command, "protocol": protocol.__dict__, "rows": to_json({**found, **clip_found})},
                                                     indent=2, default=str))  # fmt: skip
    figures = pareto_figures({**found, **clip_found}, out)
    print(text, file=sys.stderr)
    print(f"wrote {out / 'leaderboard.md'}, .csv, .json" + (f" and {len(figures)} figure(s)" if figures else ""), file=sys.stderr)


def computed_on(found) -> str:
    """The machines the table's runs computed on: seconds per epoch compare only within one."""
    counts = machines(found)
    if not counts:
        return "Computed on: no finished run yet."
    parts = [f"{label or 'not recorded (a run older than the record)'}: {n} run{'s' * (n != 1)}" for label, n in counts.most_common()]
    return "Computed on: " + "; ".join(parts) + "." + (" Seconds per epoch compare only between runs of one machine." if len(counts) > 1 else "")
