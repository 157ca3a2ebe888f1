"""``tools/search.py``'s command line: the space and budget flags, the study's place, the launchers."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import shlex
import signal
import sys
import time
from pathlib import Path

import cfg
from algorithms.mappings import MAPPING_CHOICES
from algorithms.methods.visual_prompt import AUGMENT_CHOICES
from common.errors import UserError
from models.prompts import PROMPT_CHOICES
from runner.config import name_type, split_passthrough, tool_parser
from runner.gpu_share import resolve_runs_per_gpu, runs_per_gpu_value, slots
from runner.launch import ArrayOptions, forwarding_signals, visible_gpus, write_array
from runner.requeue import requeue
from tools.config_search.space import DEFAULT_INPUT_SIZES, DEFAULT_LR_FACTOR, DEFAULT_SCHEDULERS, SPACES, Space, TrialPlan, build_space, recipe
from tools.config_search.study import check_axes, counted, open_study, requeue_dead_trials, search
from tools.config_search.trial import TrialRunner
from tools.sweep.cli import dataset_label
from tools.sweep.presets import BEYOND_DATASETS

PRUNERS = ("hyperband", "halving", "none")


# ---------------------------------------------------------------------------------------------
# Command line


def build_cli() -> argparse.ArgumentParser:
    p = tool_parser("Search a visual-prompting configuration per dataset on Optuna (docs/search.md). Flags after -- go to every run.")
    p.add_argument("--dataset", required=True, type=dataset_label, metavar="NAME",
                   help=f"the dataset: a registered name, or {', '.join(BEYOND_DATASETS)} (docs/beyond.md's data flags)")  # fmt: skip
    p.add_argument("--network", default=None, metavar="NAME", help="the frozen network (default: the method's, resnet18)")
    p.add_argument("--data-path", default=None, metavar="DIR", help="data root passed to every run (default: each run's VP_DATA)")
    p.add_argument("--results-path", default=None, metavar="DIR", help=f"results root of the runs and the study (default: {cfg.RESULTS_PATH})")
    g = p.add_argument_group("space")
    g.add_argument("--space", choices=sorted(SPACES), default="autovp",
                   help="preset axes; the flags below replace one axis each (default: autovp)\n" + "\n".join(f"  {k}: {v}" for k, v in SPACES.items()))  # fmt: skip
    g.add_argument("--prompts", nargs="*", type=name_type(PROMPT_CHOICES), metavar="NAME", help=PROMPT_CHOICES.help("prompts (default: all)"))
    g.add_argument("--mappings", nargs="*", type=name_type(MAPPING_CHOICES), metavar="NAME", help=MAPPING_CHOICES.help("label mappings (default: all)"))
    g.add_argument("--augments", nargs="*", metavar="NAME", help=f"augmentations: any value the scripts' --augment takes (a recipe, steps joined by +) (default: {' '.join(AUGMENT_CHOICES)})")
    g.add_argument("--input-sizes", nargs="*", metavar="N", help=f"--input-size of the prompts that read it; 'own' = unresized (default: {' '.join(DEFAULT_INPUT_SIZES)})")
    g.add_argument("--schedulers", nargs="*", metavar="NAME", help=f"learning-rate schedules (default: full: {' '.join(DEFAULT_SCHEDULERS)}; autovp: the recipe's)")
    g.add_argument("--lr-factor", type=float, default=None, metavar="F",
                   help=f"search lr in [recipe lr / F, recipe lr x F], log-uniform (default: full: {DEFAULT_LR_FACTOR:g}; autovp: not searched)")  # fmt: skip
    g = p.add_argument_group("budget")
    g.add_argument("--epochs", type=int, default=5, metavar="N", help="epochs of every run, the pruner's largest budget (default: 5)")
    g.add_argument("--val-fraction", type=float, default=0.1, metavar="F", help="validation split where the dataset has none (default: 0.1)")
    g.add_argument("--trials", type=int, default=24, metavar="N", help="finished trials in the study (completed, pruned or failed) (default: 24)")
    g.add_argument("--timeout", type=float, default=None, metavar="S", help="stop starting trials after S seconds (default: none)")
    g.add_argument("--workers", type=int, default=1, metavar="N", help="trials at a time in this process (one per GPU if there are GPUs) (default: 1)")
    g.add_argument("--runs-per-gpu", type=runs_per_gpu_value, default=None, metavar="N|auto",
                   help="trials at a time on each GPU (auto: from free memory); sets --workers to GPUs x N; without GPUs, N at once on the CPU"
                        " (default: --workers)")  # fmt: skip
    g.add_argument("--pruner", choices=PRUNERS, default="hyperband", help="early stopping over epochs (default: hyperband)")
    g.add_argument("--seed", type=int, default=0, help="seed of the sampler (default: 0)")
    g.add_argument("--trial-seed", type=int, default=1, metavar="S", help="training seed of the trials; the final runs use S, S+1, ... (default: 1)")
    g.add_argument("--final-seeds", type=int, default=3, metavar="N", help="seeds of the best configuration's final runs; 0: no final stage (default: 3)")
    g.add_argument("--no-linear-probe", action="store_true", help="do not run linear probing beside the final runs")
    g = p.add_argument_group("study")
    g.add_argument("--storage", default=None, metavar="URL", help="an Optuna database URL shared by workers (default: sqlite under <results>/search/<study>)")
    g.add_argument("--study-name", default=None, metavar="NAME", help="(default: dataset-network-space-epochs-<hash of the settings>)")
    g.add_argument("--launcher", choices=["local", "slurm"], default="local", help="local: search here; slurm: write a job array of workers")
    g.add_argument("--python", default=sys.executable, metavar="EXE", help="interpreter of the run commands")
    g = p.add_argument_group("slurm")
    g.add_argument("--array-tasks", type=int, default=4, metavar="N", help="workers in the array (default: 4)")
    g.add_argument("--slurm-dir", default=None, metavar="DIR", help="where the .sbatch goes (default: the study's folder)")
    g.add_argument("--cpus", type=int, default=8, metavar="N", help="CPUs per task (default: 8)")
    g.add_argument("--time", default="24:00:00", help="time limit per task (default: 24:00:00)")
    g.add_argument("--sbatch", action="append", default=[], metavar="OPTION", help="extra #SBATCH option, e.g. --sbatch=--partition=gpu (default: none)")
    # internal: an array task's offset of the sampler seed; heartbeat and polling (tests)
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--no-final", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--heartbeat", type=int, default=60, help=argparse.SUPPRESS)
    p.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)
    return p


def data_flags(args: argparse.Namespace) -> list[str]:
    """``--dataset``'s flags (docs/beyond.md's for its labels), the network and the data root."""
    root = str(args.data_path) if args.data_path else str(cfg.DATA_PATH)
    own = [f.replace("{data}", root) for f in BEYOND_DATASETS.get(args.dataset, ())]
    flags = own or ["--dataset", args.dataset]
    if args.network:
        flags += ["--network", args.network]
    if args.data_path and "--data-path" not in own:
        flags += ["--data-path", str(args.data_path)]
    return flags


def check_numbers(args: argparse.Namespace) -> None:
    for flag, value, low in (("--epochs", args.epochs, 1), ("--trials", args.trials, 1), ("--workers", args.workers, 1), ("--final-seeds", args.final_seeds, 0)):
        if value < low:
            raise UserError(f"{flag} must be at least {low}, got {value}")
    if not 0 < args.val_fraction < 1:
        raise UserError(f"--val-fraction must be in (0, 1): the search selects on validation, got {args.val_fraction}")


def default_study_name(dataset: str, runner: TrialRunner, space: Space, reference) -> str:
    blob = json.dumps({"space": space.describe(), "fixed": list(runner.fixed), "epochs": runner.epochs, "val": runner.val_fraction,
                       "data": reference.config.data_location}, sort_keys=True)  # fmt: skip
    network = reference.config.network.replace("/", "-")
    return f"{dataset}-{network}-{space.name}-{runner.epochs}ep-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------------------------------------
# The study


# ---------------------------------------------------------------------------------------------
# SLURM


def write_slurm(args: argparse.Namespace, argv: list[str], out_dir: Path, name: str, storage: str) -> Path:
    """The workers as a job array of the one launcher (:func:`runner.launch.write_array`): every task
    is a worker of the same study (trials are reserved in the database, so no two run the same one);
    resubmitting continues the study. When the array is done, the search command run once more
    without ``--launcher slurm`` makes the final runs and the report."""
    own = strip_flags(argv, {"--launcher": 1, "--array-tasks": 1, "--slurm-dir": 1, "--cpus": 1, "--time": 1, "--sbatch": 1, "--storage": 1, "--study-name": 1})
    head = [args.python, str(Path(__file__).resolve().parents[1] / "search.py"), *own[0], "--storage", storage, "--study-name", name]
    workers = [(out_dir / f"worker_{k}", [*head, "--no-final", "--workers", "1", "--worker-index", str(k), *own[1]]) for k in range(args.array_tasks)]
    script, _ = write_array(workers, out_dir, name, ArrayOptions(args.array_tasks, args.cpus, args.time, tuple(args.sbatch)))
    return script


def strip_flags(argv: list[str], drop: dict[str, int]) -> tuple[list[str], list[str]]:
    """``argv`` split at ``--`` (kept on the second part) without the flags in ``drop`` (flag -> values)."""
    own, rest = (argv[: argv.index("--")], argv[argv.index("--") :]) if "--" in argv else (argv, [])
    kept, skip = [], 0
    for word in own:
        if skip:
            skip -= 1
            continue
        flag = word.split("=")[0]
        if flag in drop:
            skip = 0 if "=" in word else drop[flag]
            continue
        kept.append(word)
    return kept, rest


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, extra = split_passthrough(argv)
    signals = None
    try:
        args = build_cli().parse_args(own)
        check_numbers(args)
        space = build_space(args.space, args.prompts, args.mappings, args.augments, args.input_sizes, args.schedulers, args.lr_factor)
        results = Path(args.results_path).expanduser().resolve() if args.results_path else cfg.RESULTS_PATH
        runner = TrialRunner(results, (*data_flags(args), *extra), args.epochs, args.val_fraction, python=args.python, poll_seconds=args.poll)
        reference = runner.spec(TrialPlan(recipe(space.prompts[0], space.mappings[0]).name, ()), args.trial_seed)  # checks the flags
        check_axes(runner, space, args.trial_seed)  # before any study exists
        name = args.study_name or default_study_name(args.dataset, runner, space, reference)
        study_dir = results / "search" / name
        storage = args.storage or f"sqlite:///{study_dir / 'study.db'}"
        if args.launcher == "slurm":
            out = Path(args.slurm_dir).expanduser() if args.slurm_dir else study_dir
            study_dir.mkdir(parents=True, exist_ok=True)
            script = write_slurm(args, argv, out, name, storage)
            print(f"wrote {script}; submit with: sbatch {shlex.quote(str(script))}", file=sys.stderr)
            return 0
        study_dir.mkdir(parents=True, exist_ok=True)
        runner.log_dir = study_dir / "logs"
        place_workers(args, runner)
        settings = {"space": space.describe(), "fixed": list(runner.fixed), "epochs": args.epochs, "val_fraction": args.val_fraction,
                    "trial_seed": args.trial_seed}  # fmt: skip
        study = open_study(storage, name, args, settings)
        for number in requeue_dead_trials(study):
            print(f"trial {number} was cut off with its search: queued again (its run continues from its checkpoint)", file=sys.stderr)
        print(f"study {name} in {storage}: {counted(study)}/{args.trials} trials finished", file=sys.stderr)
        started = time.time()
        with forwarding_signals() as signals:
            search(study, runner, space, args)
            print(f"search: {time.time() - started:.0f} s", file=sys.stderr)
            states = [t.state.name for t in study.get_trials(deepcopy=False)]
            if "COMPLETE" not in states:
                print(f"error: no trial of study {name} completed ({states.count('FAIL')} failed, {states.count('PRUNED')} pruned); "
                      f"their logs are in {runner.log_dir}", file=sys.stderr)  # fmt: skip
                return 1
            if args.no_final or args.final_seeds == 0:
                return 0
            from tools.config_search.report import final_stage

            report = final_stage(study, runner, args, study_dir, storage, argv)
        print(f"wrote {report}", file=sys.stderr)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the same command continues the study (a stopped run resumes from its checkpoint)", file=sys.stderr)
        if signals is not None and signals.received in (signal.SIGUSR1, signal.SIGTERM) and os.environ.get("SLURM_JOB_ID"):
            print(requeue()[1], file=sys.stderr)  # an array worker warned of its time limit: back in the queue
        return 130
    return 0


def place_workers(args: argparse.Namespace, runner: TrialRunner) -> None:
    """Trials at a time and the GPU each takes: ``--runs-per-gpu`` per GPU, else ``--workers`` spread over the GPUs."""
    gpus = visible_gpus()
    if args.runs_per_gpu is not None:  # several trials share each GPU: one run process per slot
        runner.runs_per_gpu = resolve_runs_per_gpu(args.runs_per_gpu, gpus)
        places = slots(gpus, runner.runs_per_gpu)
        args.workers = len(places)
    else:
        places = [gpus[k % len(gpus)] for k in range(args.workers)] if gpus else []
    if gpus:
        runner.gpus = queue.Queue()
        for gpu in places:
            runner.gpus.put(gpu)
