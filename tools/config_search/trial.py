"""One trial of ``tools/search.py``: an ordinary run of a method script, watched epoch by epoch.

The run is the same command a researcher would type, so its folder is the one
:meth:`RunConfig.run_path` names and a finished run is read instead of trained again (a partial
one is continued with ``--resume``). While the run trains, its ``metrics.jsonl`` (rewritten
atomically after every epoch) is read and each epoch's validation accuracy is reported to Optuna;
when the pruner says stop, the run is terminated. A run that exits with an error (out of memory, a
bad flag combination) fails the trial with the run's last ``error:`` line as its reason, and one
line naming its log is printed. The run is a child of the launcher (:mod:`runner.launch`): it dies
with the search, after its current step, with a checkpoint that the next search continues.
"""
from __future__ import annotations

import queue
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from algorithms.settings import RunConfig
from common.errors import UserError
from common.preemption import EXIT_STOPPED
from runner import launch
from runner.gpu_share import run_environment
from runner.records import lock_held, read_finished, read_metrics
from tools.config_search.space import TrialPlan
from tools.sweep.jobs import FINISHED, PARTIAL, find_script, method_config, run_status

# flags the search sets itself; given after ``--`` they would be overridden silently
RESERVED_FLAGS = ("--epochs", "--seed", "--val-fraction", "--results-path", "--resume", "--overwrite", "--run-name", "--prompt",
                  "--mapping", "--augment", "--input-size", "--eval-only")  # fmt: skip
IN_USE = "is in use by"  # runner.run_lock's message: another process trains this folder


class TrialFailed(Exception):
    """A run ended with an error; the trial is recorded as failed and the search goes on. ``log``: the run's output."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


class TrialStopped(KeyboardInterrupt):
    """The run was stopped by a signal (exit 75) with a checkpoint: the search is stopping, the trial is not failed."""


@dataclass
class RunSpec:
    """One run: its command (without ``--resume``), folder and resolved settings."""

    method: str
    command: list[str]
    run_dir: Path
    config: RunConfig

    @property
    def shell(self) -> str:
        return shlex.join(self.command)


@dataclass
class TrialRunner:
    results: Path
    fixed: tuple[str, ...]  # every run's flags: data, network, batch size, ...
    epochs: int
    val_fraction: float
    python: str = sys.executable
    poll_seconds: float = 1.0
    log_dir: Path | None = None
    gpus: queue.Queue | None = field(default=None, repr=False)
    runs_per_gpu: int = 1  # runs sharing one GPU (told to each run, whose memory probes plan with its share)
    stop_grace: float = launch.STOP_GRACE_S  # seconds a pruned or interrupted run has to stop with its checkpoint

    def __post_init__(self) -> None:
        for flag in self.fixed:
            if flag.split("=")[0] in RESERVED_FLAGS:
                raise UserError(f"{flag.split('=')[0]} is set by the search; give it to tools/search.py, not after --")

    def spec(self, plan: TrialPlan, seed: int) -> RunSpec:
        flags = [*self.fixed, "--epochs", str(self.epochs), "--val-fraction", repr(self.val_fraction), "--seed", str(seed),
                 "--results-path", str(self.results), *plan.flags]  # fmt: skip
        config = method_config(plan.method, flags)
        return RunSpec(plan.method, [self.python, str(find_script(plan.method)), *flags], config.run_path(), config)

    def run(self, spec: RunSpec, trial=None, log_name: str = "run") -> dict:
        """Train (or read) the run to its end; report each epoch's validation accuracy to ``trial``
        and stop when it should be pruned (``optuna.TrialPruned``). Returns ``results.json``."""
        reported = 0
        while True:
            status = run_status(spec.run_dir, spec.config.epochs)
            if status == FINISHED:
                reported = self._report(spec, trial, reported, prune=False)
                return read_results(spec.run_dir)
            if lock_held(spec.run_dir):  # another worker trains the same configuration: follow it
                reported = self._follow(spec, trial, reported)
                continue
            launch_command = spec.command + (["--resume"] if status == PARTIAL else [])
            code, error, reported, log = self._launch(spec, launch_command, trial, log_name, reported)
            if code == 0:
                continue  # now finished
            if error and IN_USE in error:
                continue  # lost a race for the folder: follow the winner
            raise TrialFailed(error or f"exit status {code}", log)

    def _launch(self, spec: RunSpec, launch_command: list[str], trial, log_name: str, reported: int) -> tuple[int, str | None, int, Path]:
        log_dir = self.log_dir or spec.run_dir.parent
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{log_name}.log"
        gpu = self.gpus.get() if self.gpus is not None else None
        try:
            env = run_environment(gpu, self.runs_per_gpu)
            env["VP_SEARCH_RUN_DIR"] = str(spec.run_dir)  # for wrappers of the script; the run itself ignores it
            if launch.stopping():
                raise TrialStopped("the search is stopping")
            proc = launch.start(launch_command, log_path, env)
            try:
                while True:
                    code = launch.finished(proc)
                    if launch.stopping():  # the search got a stop signal, forwarded to the run
                        code = launch.stop(proc, self.stop_grace)
                        raise TrialStopped(f"the run was stopped (exit {code}; {log_path})")
                    reported = self._report(spec, trial, reported)
                    if code is not None:
                        break
                    time.sleep(self.poll_seconds)
            except BaseException:  # pruned, interrupted: the run stops with the trial
                launch.stop(proc, self.stop_grace)
                raise
        finally:
            if gpu is not None:
                self.gpus.put(gpu)
        if code == EXIT_STOPPED:
            raise TrialStopped(f"the run was stopped with a checkpoint ({log_path})")
        return code, None if code == 0 else last_error(log_path), reported, log_path

    def _follow(self, spec: RunSpec, trial, reported: int) -> int:
        while lock_held(spec.run_dir):
            if launch.stopping():
                raise TrialStopped("the search is stopping")
            reported = self._report(spec, trial, reported, prune=False)
            time.sleep(self.poll_seconds)
        return reported

    def _report(self, spec: RunSpec, trial, reported: int, prune: bool = True) -> int:
        """Report the epochs not yet reported; raise ``optuna.TrialPruned`` if the trial should stop."""
        if trial is None:
            return reported
        rows = read_metrics(spec.run_dir)
        for row in rows[reported:]:
            if row.get("val_acc") is None:
                raise TrialFailed("the run has no validation split (a search selects on validation: --val-fraction > 0)")
            trial.report(float(row["val_acc"]), int(row["epoch"]))
            reported += 1
            last = int(row["epoch"]) >= spec.config.epochs  # a run at its end is complete, not pruned
            if prune and not last and trial.should_prune():
                import optuna

                trial.set_user_attr("pruned_at_epoch", int(row["epoch"]))
                raise optuna.TrialPruned(f"pruned after epoch {row['epoch']} (validation {row['val_acc']:.2f}%)")
        return reported


def read_results(run_dir: Path) -> dict:
    return read_finished(run_dir) or {}


def last_error(log_path: Path) -> str | None:
    """The run's last ``error:`` line, else its last line."""
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or [None])[-1]
