#!/usr/bin/env python
"""Search the prompt, mapping and recipe for one dataset on Optuna, choosing on validation only.

    python tools/search.py --dataset dtd10 --network efficientnet_lite0 --data-path /data \\
        --space autovp --trials 24 --epochs 5 -- --batch-size 64
    python tools/search.py ... --workers 2                      # two trials at a time here
    python tools/search.py ... --launcher slurm --array-tasks 8 # a job array sharing the study

Every trial is an ordinary run of a method script (the command is printed and stored with the
trial), in its ordinary run folder: a configuration already trained is read, not trained again.
The study lives in ``<results>/search/<study>/study.db`` (``--storage URL`` for a shared
database), so the same command continues a killed search. Selection uses only validation
accuracy; after the search the best configuration is re-run on ``--final-seeds`` seeds and its
validation-selected test accuracy is reported once, beside the best fixed configuration of
docs/beyond.md and linear probing (docs/search.md).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import random
import shlex
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cfg  # noqa: E402
from algorithms.mappings import MAPPING_CHOICES  # noqa: E402
from algorithms.methods.visual_prompt import AUGMENT_CHOICES  # noqa: E402
from common.errors import UserError  # noqa: E402
from models.prompts import PROMPT_CHOICES  # noqa: E402
from runner.config import name_type, split_passthrough, tool_parser  # noqa: E402
from runner.gpu_share import resolve_runs_per_gpu, runs_per_gpu_value, slots  # noqa: E402
from tools.reproduce import BEYOND_DATASETS, dataset_label, visible_gpus  # noqa: E402
from tools.search_space import DEFAULT_INPUT_SIZES, DEFAULT_LR_FACTOR, DEFAULT_SCHEDULERS, SPACES, Space, TrialPlan, build_space, recipe, suggest  # noqa: E402
from tools.search_trial import TrialFailed, TrialRunner  # noqa: E402

PRUNERS = ("hyperband", "halving", "none")
COUNTED = ("COMPLETE", "PRUNED")  # plus FAIL with a recorded reason; a killed worker's trial is retried instead


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
    g.add_argument("--augments", nargs="*", metavar="NAME", help=f"augmentations, of {', '.join(AUGMENT_CHOICES)} (default: all)")
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


def open_study(url: str, name: str, args: argparse.Namespace, settings: dict):
    """Create or load the study; a study of that name with other settings is refused."""
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # a worker that stops sending heartbeats (killed) has its trial failed and queued again with
    # the same parameters; the run continues from its checkpoint
    storage = None
    for attempt in range(6):  # workers started together race to create the tables: the losers retry
        try:
            storage = RDBStorage(url, heartbeat_interval=args.heartbeat, grace_period=2 * args.heartbeat,
                                 heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2))  # fmt: skip
            break
        except Exception as exc:  # sqlalchemy's errors; a bad URL fails every attempt
            if attempt == 5:
                raise UserError(f"cannot open the study storage {url}: {str(exc).splitlines()[0]}") from exc
            time.sleep(0.5 + random.random() * 2**attempt)
    pruner = {
        "hyperband": optuna.pruners.HyperbandPruner(min_resource=1, max_resource=args.epochs, reduction_factor=3),
        "halving": optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
        "none": optuna.pruners.NopPruner(),
    }[args.pruner]
    sampler = optuna.samplers.TPESampler(seed=args.seed + args.worker_index, n_startup_trials=min(8, max(2, args.trials // 3)))
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler, pruner=pruner, load_if_exists=True)
    stored = study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", settings)
    elif stored != json.loads(json.dumps(settings)):
        raise UserError(f"study {name!r} in {url} was made with other settings; give another --study-name (stored: {json.dumps(stored)})")
    return study


def counted(study) -> int:
    """Trials that count toward ``--trials``: completed, pruned, and failed with a reason."""
    return sum(t.state.name in COUNTED or (t.state.name == "FAIL" and "error" in t.user_attrs) for t in study.get_trials(deepcopy=False))


def progress_line(study, trial, target: int) -> str:
    state = trial.state.name.lower()
    head = f"[{counted(study)}/{target}] trial {trial.number} {state}"
    if trial.state.name == "COMPLETE":
        head += f": validation {trial.value:.2f}%"
    elif trial.state.name == "PRUNED":
        head += f" after epoch {trial.user_attrs.get('pruned_at_epoch', '?')}"
    elif "error" in trial.user_attrs:
        head += f": {trial.user_attrs['error']}"
    try:
        best = study.best_trial
        head += f" | best {best.value:.2f}% (trial {best.number})"
    except ValueError:
        pass
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete and trial.datetime_start else 0
    return f"{head} | {json.dumps(trial.params)} | {seconds:.0f} s"


def search(study, runner: TrialRunner, space: Space, args: argparse.Namespace) -> None:

    lock = threading.Lock()

    def objective(trial) -> float:
        plan = suggest(trial, space)
        try:
            spec = runner.spec(plan, args.trial_seed)
        except UserError as exc:  # a combination the method refuses: a failed trial, not a failed search
            trial.set_user_attr("error", f"error: {exc}")
            raise TrialFailed(str(exc)) from exc
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        for key, value in (("method", plan.method), ("flags", list(plan.flags)), ("command", spec.shell), ("run_dir", str(spec.run_dir))):
            trial.set_user_attr(key, value)
        with lock:
            print(f"trial {trial.number}: {spec.shell}", file=sys.stderr, flush=True)
        try:
            results = runner.run(spec, trial, log_name=f"trial_{trial.number:04d}")
        except TrialFailed as exc:
            trial.set_user_attr("error", str(exc))
            raise
        if results.get("best_val_acc") is None:
            trial.set_user_attr("error", "the run has no validation accuracy")
            raise TrialFailed("the run has no validation accuracy")
        trial.set_user_attr("val_selected_epoch", results.get("val_selected_epoch"))
        return float(results["best_val_acc"])

    def stopper(study, trial) -> None:
        with lock:
            print(progress_line(study, trial, args.trials), file=sys.stderr, flush=True)
        if counted(study) >= args.trials:
            study.stop()

    left = args.trials - counted(study)
    if left <= 0:
        print(f"study {study.study_name}: {args.trials} trials already finished", file=sys.stderr)
        return
    study.optimize(objective, n_trials=left, timeout=args.timeout, n_jobs=args.workers, catch=(TrialFailed,), callbacks=[stopper])


# ---------------------------------------------------------------------------------------------
# SLURM


SLURM_TEMPLATE = """#!/bin/bash
#SBATCH --job-name={name}
#SBATCH --array=0-{last}
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task={cpus}
#SBATCH --time={time}
#SBATCH --output={log_dir}/%A_%a.out
{extra}
# Every array task is one worker of the same Optuna study (trials are reserved in the database,
# so no two workers run the same trial); resubmitting continues the study. When the array is
# done, run the search command once more without --launcher slurm for the final runs and report:
#   {final}
set -euo pipefail
cd {repo}
{command} --worker-index "$SLURM_ARRAY_TASK_ID"
"""


def write_slurm(args: argparse.Namespace, argv: list[str], out_dir: Path, name: str, storage: str) -> Path:
    own = strip_flags(argv, {"--launcher": 1, "--array-tasks": 1, "--slurm-dir": 1, "--cpus": 1, "--time": 1, "--sbatch": 1, "--storage": 1, "--study-name": 1})
    head = [args.python, str(Path(__file__).resolve()), *own[0], "--storage", storage, "--study-name", name]
    worker = shlex.join([*head, "--no-final", "--workers", "1", *own[1]])
    final = shlex.join([*head, *own[1]])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "logs").mkdir(exist_ok=True)
    script = out_dir / f"{name}.sbatch"
    script.write_text(SLURM_TEMPLATE.format(
        name=shlex.quote(name), last=args.array_tasks - 1, cpus=args.cpus, time=args.time, log_dir=out_dir / "logs",
        extra="".join(f"#SBATCH {opt}\n" for opt in args.sbatch), final=final, repo=shlex.quote(str(cfg.REPO_ROOT)),
        command=worker,
    ))  # fmt: skip
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
    try:
        args = build_cli().parse_args(own)
        check_numbers(args)
        space = build_space(args.space, args.prompts, args.mappings, args.augments, args.input_sizes, args.schedulers, args.lr_factor)
        results = Path(args.results_path).expanduser().resolve() if args.results_path else cfg.RESULTS_PATH
        runner = TrialRunner(results, (*data_flags(args), *extra), args.epochs, args.val_fraction, python=args.python, poll_seconds=args.poll)
        reference = runner.spec(TrialPlan(recipe(space.prompts[0], space.mappings[0]).name, ()), args.trial_seed)  # checks the flags
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
        settings = {"space": space.describe(), "fixed": list(runner.fixed), "epochs": args.epochs, "val_fraction": args.val_fraction,
                    "trial_seed": args.trial_seed}  # fmt: skip
        study = open_study(storage, name, args, settings)
        print(f"study {name} in {storage}: {counted(study)}/{args.trials} trials finished", file=sys.stderr)
        started = time.time()
        search(study, runner, space, args)
        print(f"search: {time.time() - started:.0f} s", file=sys.stderr)
        if args.no_final or args.final_seeds == 0:
            return 0
        from tools.search_report import final_stage

        report = final_stage(study, runner, args, study_dir, storage, argv)
        print(f"wrote {report}", file=sys.stderr)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the same command continues the study (a stopped run resumes from its checkpoint)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
