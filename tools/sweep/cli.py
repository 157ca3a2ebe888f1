"""``tools/reproduce.py``'s command line: a grid (or preset) expanded, planned and handed to the launcher."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import cfg
from algorithms.methods import METHOD_CHOICES
from common import progress
from common.errors import UserError
from common.preemption import EXIT_STOPPED
from data.registry import DATASETS
from models.networks import NETWORKS
from runner.config import name_type, split_passthrough, tool_parser
from runner.gpu_share import RUN_MEMORY_GIB, distinct, resolve_runs_per_gpu, runs_per_gpu_value
from runner.launch import NOT_STARTED, ArrayOptions, forwarding_signals, run_local, shell_lines, stopping, visible_gpus, write_array
from tools.sweep.jobs import FINISHED, NEW, PARTIAL, Job, PlannedJob, expand_grid, expand_variants, plan, slurm_command
from tools.sweep.presets import BEYOND_BY_LABEL, BEYOND_DATASETS, PAPER_SEEDS, PRESETS


def launch_local(planned: list[PlannedJob], gpus: list[str], runs_per_gpu: int = 1) -> list[tuple[PlannedJob, int]]:
    """Run the unfinished jobs, ``runs_per_gpu`` at a time on each GPU (that many at once on the CPU
    without GPUs), each its own process (:mod:`runner.launch`); each job's output goes to
    ``<run folder>/launcher.log``. Two jobs of one run folder never run: the repeat is skipped.
    Returns the failures as (job, exit code)."""
    todo, repeats = distinct([p for p in planned if p.status != FINISHED], key=lambda p: p.run_dir)
    for p in repeats:
        progress.line(f"skipped {p.label}: the same run folder as an earlier job")
    by_task = {p.task(): p for p in todo}
    with progress.bar(total=len(todo), desc="runs", unit="run") as bar:

        def done(task, code: int) -> None:
            if code == NOT_STARTED and stopping():
                progress.line(f"not started (stopping): {task.label}")
            elif code == EXIT_STOPPED:
                progress.line(f"stopped with a checkpoint: {task.label}; the same command continues it")
            elif code != 0:
                progress.line(f"FAILED ({code}) {task.label}: see {task.log}")
            bar.update(1)

        with forwarding_signals():
            failures = run_local(list(by_task), gpus, runs_per_gpu, done)
    return [(by_task[task], code) for task, code in failures]


def run_here(planned: list[PlannedJob], args: argparse.Namespace) -> list[tuple[PlannedJob, int]]:
    """The local launcher with the flags of :func:`add_launch_flags`: the GPUs and how many runs share each."""
    gpus = visible_gpus() if args.gpus is None else args.gpus
    runs_per_gpu = resolve_runs_per_gpu(args.runs_per_gpu, gpus, args.run_memory_gib)
    if runs_per_gpu > 1:
        print(f"{runs_per_gpu} runs at once per {'GPU' if gpus else 'machine (no GPU)'}", file=sys.stderr)
    return launch_local(planned, gpus, runs_per_gpu)


INTERRUPTED = "interrupted: the runs stopped with a checkpoint; the same command continues them"


def dispatch(planned: list[PlannedJob], args: argparse.Namespace, results: Path, name: str, then: str) -> list[tuple[PlannedJob, int]] | None:
    """The launcher ``--launcher`` names, for every planned run (finished ones are skipped): ``print``
    writes the commands, ``slurm`` the job array (``then``: what to do after submitting), both
    returning None; ``local`` runs them here and returns the failures."""
    if args.launcher == "print":
        print(shell_lines([p.task() for p in planned if p.status != FINISHED]), end="")
        return None
    if args.launcher == "slurm":
        out = Path(args.slurm_dir).expanduser() if args.slurm_dir else results / "slurm"
        written = write_slurm(planned, out, name, limit=args.array_limit, cpus=args.cpus, time=args.time, sbatch=args.sbatch)
        if written is None:
            print("nothing to run: every run is finished", file=sys.stderr)
        else:
            print(f"wrote {written[0]} and {written[1]}; submit with: sbatch {shlex.quote(str(written[0]))}{then}", file=sys.stderr)
        return None
    return run_here(planned, args)


def write_slurm(planned: list[PlannedJob], out_dir: Path, name: str, *, limit: int = 32, cpus: int = 8, time: str = "24:00:00", sbatch=()) -> tuple[Path, Path] | None:
    """Write ``<name>.jobs.tsv`` and ``<name>.sbatch`` for the unfinished jobs (None if there are none)."""
    todo = [p for p in planned if p.status != FINISHED]
    if not todo:
        return None
    return write_array([(p.run_dir, slurm_command(p)) for p in todo], out_dir, name, ArrayOptions(limit, cpus, time, tuple(sbatch)))


def dataset_label(text: str) -> str:
    """``--datasets``: a dataset name, or a dataset label of the comparison presets (``dtd10``)."""
    return text if text in BEYOND_DATASETS else name_type(DATASETS)(text)


def build_cli() -> argparse.ArgumentParser:
    p = tool_parser("Expand a grid of runs and launch, schedule or print them. Flags after -- go to every run.")
    presets = "\n".join(f"  {name}: {preset.description}" for name, preset in sorted(PRESETS.items()))
    p.add_argument("--preset", choices=sorted(PRESETS), metavar="NAME",
                   help=f"a named grid; the axis flags below replace its axes (default: none)\n{presets}")  # fmt: skip
    p.add_argument("--datasets", nargs="+", type=dataset_label, metavar="NAME",
                   help=DATASETS.help(f"datasets (default: the preset's; the comparison presets also name {', '.join(BEYOND_DATASETS)})"))  # fmt: skip
    p.add_argument("--networks", nargs="+", metavar="NAME",
                   help=NETWORKS.help("networks; '-' for a method's own model (CLIP) (default: the preset's, else resnet18)"))  # fmt: skip
    p.add_argument("--methods", nargs="+", metavar="NAME", help=METHOD_CHOICES.help("methods (default: the preset's)"))
    p.add_argument("--variants", nargs="+", metavar="LABEL",
                   help=f"a comparison preset (beyond): only these configurations (default: all): {', '.join(BEYOND_BY_LABEL)}")  # fmt: skip
    p.add_argument("--seeds", nargs="+", type=int, metavar="S", help=f"training seeds (default: the preset's, else {' '.join(map(str, PAPER_SEEDS))})")
    p.add_argument("--train-fractions", nargs="+", type=float, metavar="F", help="also sweep --train-fraction (default: the preset's, else none)")
    p.add_argument("--results-path", default=None, metavar="DIR", help=f"results root passed to every run (default: {cfg.RESULTS_PATH})")
    p.add_argument("--data-path", default=None, metavar="DIR", help="data root passed to every run (default: each run's VP_DATA)")
    p.add_argument("--python", default=sys.executable, metavar="EXE", help="interpreter in the generated commands")
    add_launch_flags(p, "the preset, or 'grid'")
    return p


def add_launch_flags(p: argparse.ArgumentParser, name_default: str) -> None:
    """The flags of the one launcher (runner/launch.py) that every tool running runs shares: GPUs, sharing, the SLURM array."""
    p.add_argument("--launcher", choices=["local", "slurm", "print"], default="local",
                   help="local: run here, --runs-per-gpu at a time per GPU; slurm: write a job array; print: the commands (default: local)")  # fmt: skip
    p.add_argument("--gpus", nargs="*", metavar="ID", help="local: GPU ids to use (default: the visible ones)")
    p.add_argument("--runs-per-gpu", type=runs_per_gpu_value, default=1, metavar="N|auto",
                   help="local: runs at once on each GPU (on the CPU without GPUs: at once in all), each its own process;"
                        " auto: free memory / --run-memory-gib, 1 to 8 (1 without CUDA). Sharing never changes a run's result")  # fmt: skip
    p.add_argument("--run-memory-gib", type=float, default=RUN_MEMORY_GIB, metavar="GIB", help="local: one run's GPU memory, for --runs-per-gpu auto")
    g = p.add_argument_group("slurm")
    g.add_argument("--slurm-dir", default=None, metavar="DIR", help="where the .sbatch and .jobs.tsv go (default: <results>/slurm)")
    g.add_argument("--slurm-name", default=None, metavar="NAME", help=f"job name and file stem (default: {name_default})")
    g.add_argument("--array-limit", type=int, default=32, metavar="N", help="array tasks running at once")
    g.add_argument("--cpus", type=int, default=8, metavar="N", help="CPUs per task")
    g.add_argument("--time", default="24:00:00", help="time limit per task")
    g.add_argument("--sbatch", action="append", default=[], metavar="OPTION", help="extra #SBATCH option, e.g. --sbatch=--partition=gpu (default: none)")


def jobs_from_args(args: argparse.Namespace, extra: list[str]) -> list[Job]:
    preset = PRESETS[args.preset] if args.preset else None
    if preset is None and not (args.datasets and args.methods):
        raise UserError("give --preset NAME or at least --datasets and --methods")
    if args.variants and not (preset and preset.variants):
        raise UserError("--variants selects configurations of a comparison preset (--preset beyond)")
    if preset is not None and preset.variants:
        if args.methods or args.train_fractions:
            raise UserError(f"preset {args.preset} is a list of configurations; choose them with --variants, not --methods/--train-fractions")
        return expand_variants(preset, args.datasets, args.networks, args.seeds, args.variants, extra)
    networks = args.networks or (preset.networks if preset else ("resnet18",))
    networks = tuple(None if n == "-" else n for n in networks)
    return expand_grid(
        args.datasets or preset.datasets,
        networks,
        args.methods or preset.methods,
        args.seeds or (preset.seeds if preset else PAPER_SEEDS),
        tuple(args.train_fractions) if args.train_fractions else (preset.train_fractions if preset else (None,)),
        extra,
        preset.only_networks if preset else None,
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, extra = split_passthrough(argv)
    try:
        args = build_cli().parse_args(own)
        results = Path(args.results_path).expanduser().resolve() if args.results_path else cfg.RESULTS_PATH
        planned = plan(jobs_from_args(args, extra), results, args.python, args.data_path)
        counts = {s: sum(p.status == s for p in planned) for s in (FINISHED, PARTIAL, NEW)}
        print(
            f"{len(planned)} runs: {counts[FINISHED]} finished (skipped), {counts[PARTIAL]} partial (resumed), {counts[NEW]} new",
            file=sys.stderr,
        )
        failures = dispatch(planned, args, results, args.slurm_name or args.preset or "grid", then="")
        if failures is None:
            return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    if failures:
        print(f"{len(failures)} run(s) failed:", file=sys.stderr)
        for p, code in failures:
            print(f"  exit {code}: {p.label}  (log: {p.run_dir / 'launcher.log'})", file=sys.stderr)
        return 1
    return 0

