"""The Optuna study of the search: opened (settings checked), its trials run, and the trials of a killed search queued again."""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import threading
import time

from common.errors import UserError
from tools.config_search.space import Space, suggest
from tools.config_search.trial import TrialFailed, TrialRunner

COUNTED = ("COMPLETE", "PRUNED")  # plus FAIL with a recorded reason; a killed worker's trial is retried instead


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def process_gone(worker: str | None) -> bool:
    """Whether the search process ``host:pid`` that ran a trial is gone (known only on its own host)."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def requeue_dead_trials(study) -> list[int]:
    """Trials of a search that was killed (still RUNNING, their process gone) or interrupted (FAIL
    without a reason): each is marked failed and queued again at once with its parameters, so its
    run continues from its checkpoint. Returns the numbers queued again."""
    import optuna
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    again = []
    for t in trials:
        dead = t.state == TrialState.RUNNING and process_gone(t.user_attrs.get("worker"))
        interrupted = t.state == TrialState.FAIL and "error" not in t.user_attrs
        if t.number in retried or not (dead or interrupted) or not t.params:
            continue
        if dead:  # what Optuna's heartbeat does after its grace period, at once
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        history = [*t.system_attrs.get("retry_history", []), t.number]
        study.add_trial(optuna.create_trial(
            state=TrialState.WAITING, params=t.params, distributions=t.distributions,
            user_attrs={k: v for k, v in t.user_attrs.items() if k != "worker"},
            system_attrs={"failed_trial": history[0], "retry_history": history},
        ))  # fmt: skip
        again.append(t.number)
    return again


def check_axes(runner: TrialRunner, space: Space, seed: int) -> None:
    """Every value of every axis is accepted by a method script (with some prompt of the space),
    before any study exists: a bad value is one error line naming its flag, not a study of failed trials."""
    from tools.config_search.space import OWN_SIZE, TrialPlan, recipe

    first = {"--prompt": space.prompts[0], "--mapping": space.mappings[0], "--augment": space.augments[0]}
    axes = [("--prompts", "--prompt", space.prompts), ("--mappings", "--mapping", space.mappings), ("--augments", "--augment", space.augments),
            ("--schedulers", "--scheduler", space.schedulers),
            ("--input-sizes", "--input-size", [s for s in space.input_sizes if s != OWN_SIZE])]  # fmt: skip
    for axis, flag, values in axes:
        for value in values:
            reason = None
            for prompt in [first["--prompt"]] if flag == "--prompt" else space.prompts:
                flags = {**first, "--prompt": prompt, flag: value}
                plan = TrialPlan(recipe(flags["--prompt"], flags["--mapping"]).name, tuple(w for kv in flags.items() for w in kv))
                try:
                    runner.spec(plan, seed)
                    reason = None
                    break
                except UserError as exc:
                    reason = reason or str(exc)
            if reason is not None:
                raise UserError(f"{axis}: {value!r} is refused by the method scripts: {reason}")


def quiet_optuna() -> None:
    """Optuna's own log off below errors (a failed trial is one line of ours, not its traceback)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def open_study(url: str, name: str, args: argparse.Namespace, settings: dict):
    """Create or load the study; a study of that name with other settings is refused."""

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    quiet_optuna()
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
    elif "error" in trial.user_attrs:  # one line: the run's last error line and where its whole output is
        head += f": {trial.user_attrs['error']}" + (f" (log: {trial.user_attrs['log']})" if "log" in trial.user_attrs else "")
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
        trial.set_user_attr("worker", worker_id())  # first: a trial of a killed search is found by it
        plan = suggest(trial, space)
        try:
            spec = runner.spec(plan, args.trial_seed)
        except UserError as exc:  # a combination the method refuses: a failed trial, not a failed search
            trial.set_user_attr("error", f"error: {exc}")
            raise TrialFailed(str(exc)) from exc
        for key, value in (("method", plan.method), ("flags", list(plan.flags)), ("command", spec.shell), ("run_dir", str(spec.run_dir))):
            trial.set_user_attr(key, value)
        with lock:
            print(f"trial {trial.number}: {spec.shell}", file=sys.stderr, flush=True)
        try:
            results = runner.run(spec, trial, log_name=f"trial_{trial.number:04d}")
        except TrialFailed as exc:
            trial.set_user_attr("error", str(exc))
            if exc.log is not None:
                trial.set_user_attr("log", str(exc.log))
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
