"""The one launcher of the tools: runs here in slots, a SLURM job array, or the commands printed.

Used by ``tools/reproduce.py``, the configuration search and the comparison (``tools/leaderboard.py``).

- **Here** (:func:`run_local`): every command is its own process, ``--runs-per-gpu`` at a time on
  each GPU (:mod:`runner.gpu_share`). The processes are this process's own: each gets its own
  process group and the parent-death signal (Linux ``PR_SET_PDEATHSIG``), so a launcher killed
  even by SIGKILL sends its runs SIGTERM; a run stopped by SIGTERM writes an exact checkpoint after
  its current step and exits 75 (:data:`common.preemption.EXIT_STOPPED`), and the same command
  continues it. SIGTERM, SIGINT and SIGUSR1 sent to the launcher (:func:`forwarding_signals`) go on
  to every run as SIGTERM; the launcher waits for them to stop, then raises :class:`Interrupted`.
- **SLURM** (:func:`write_array`): a job array, one task per line of a jobs file, with the warning
  signal before the time limit and ``--requeue``; a finished run's task exits at once.
- **Print**: :func:`shell_lines`, one shell command a line.
"""
from __future__ import annotations

import ctypes
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cfg
from runner.gpu_share import run_environment, run_in_slots, slots

STOP_GRACE_S = 120.0  # a run asked to stop finishes its step and writes its checkpoint in this time (SLURM's warning)
SIGNAL_WARNING_S = 120  # SLURM sends USR1 this long before the time limit: time for the current step's checkpoint
_PR_SET_PDEATHSIG = 1
NOT_STARTED = 130  # the exit code of a task the launcher did not start because it was stopping


class Interrupted(KeyboardInterrupt):
    """The launcher got a stop signal; its runs were asked to stop and have stopped."""


@dataclass(frozen=True)
class Task:
    """One command to run: a label for messages, its log file, and the run folder it writes (None: none of its own)."""

    label: str
    command: tuple[str, ...]
    log: Path
    run_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def shell(self) -> str:
        return shlex.join(self.command)


def _parent_death_signal() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux); elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class _Children:
    """The live processes this launcher started, and whether a stop was asked."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: set[subprocess.Popen] = set()
        self.stopping = threading.Event()

    def signal_all(self, signum: int = signal.SIGTERM) -> None:
        with self.lock:
            procs = list(self.live)
        for proc in procs:
            try:
                os.killpg(proc.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass


CHILDREN = _Children()


def start(command: Sequence[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start ``command`` as a child of this launcher, its output appended to ``log`` after a ``$ command`` line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        proc = subprocess.Popen(
            list(command), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd or cfg.REPO_ROOT,
            process_group=0, preexec_fn=_parent_death_signal,
        )  # fmt: skip
    with CHILDREN.lock:
        CHILDREN.live.add(proc)
    if CHILDREN.stopping.is_set():  # a stop arrived while it started
        stop(proc)
    return proc


def finished(proc: subprocess.Popen) -> int | None:
    """``proc``'s exit code once it ended (and forgotten by the launcher), else None."""
    code = proc.poll()
    if code is not None:
        with CHILDREN.lock:
            CHILDREN.live.discard(proc)
    return code


def wait(proc: subprocess.Popen) -> int:
    code = proc.wait()
    finished(proc)
    return code


def stop(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> int:
    """Ask a run to stop (SIGTERM to its group: a checkpoint after its step), SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return wait(proc)


def run_logged(task: Task, env: dict[str, str] | None = None) -> int:
    """Run ``task`` to its end; 127 if it cannot start (the reason is in its log and printed)."""
    try:
        return wait(start(task.command, task.log, env))
    except OSError as exc:
        print(f"cannot start {task.label}: {exc}", file=sys.stderr)
        return 127


def stopping() -> bool:
    """Whether a stop signal reached the launcher: start nothing more, and stop waiting for more work."""
    return CHILDREN.stopping.is_set()


class forwarding_signals:
    """While active (main thread only): SIGTERM, SIGINT and SIGUSR1 go to every run as SIGTERM and
    :func:`stopping` turns true; at the end the launcher waits for its runs (each writes its
    checkpoint) and raises :class:`Interrupted`. The previous handlers come back after. The
    handler only records and forwards (raising from it could land in any library's code)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

    def __enter__(self) -> forwarding_signals:
        self._saved = {}
        self.received: int | None = None
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._saved[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
        CHILDREN.stopping.set()
        CHILDREN.signal_all(signal.SIGTERM)

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if self.received is not None:  # the runs were asked to stop: let them write their checkpoints
                with CHILDREN.lock:
                    procs = list(CHILDREN.live)
                for proc in procs:
                    stop(proc)
        finally:
            for signum, handler in self._saved.items():
                signal.signal(signum, handler)
            CHILDREN.stopping.clear()
        if self.received is not None and kind is None:
            raise Interrupted(f"stopped by {signal.Signals(self.received).name}")


def run_local(
    tasks: Sequence[Task], gpus: Sequence[str], runs_per_gpu: int = 1, done: Callable[[Task, int], None] | None = None
) -> list[tuple[Task, int]]:
    """Run every task, ``runs_per_gpu`` at a time on each GPU (that many at once without GPUs), each
    told its GPU and how many share it; ``done(task, code)`` as each ends. Returns the failures."""

    def execute(task: Task, gpu: str | None) -> int:
        if stopping():
            return NOT_STARTED
        return run_logged(task, {**run_environment(gpu, runs_per_gpu), **task.env})

    return run_in_slots(list(tasks), slots(gpus, runs_per_gpu), execute, done)


def shell_lines(tasks: Sequence[Task]) -> str:
    """The print mode: one shell command a line."""
    return "".join(task.shell + "\n" for task in tasks)


ARRAY_TEMPLATE = """#!/bin/bash
#SBATCH --job-name={name}
#SBATCH --array=0-{last}%{limit}
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task={cpus}
#SBATCH --time={time}
#SBATCH --output={log_dir}/%A_%a.out
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@{warning}
#SBATCH --requeue
{extra}
# One array task per line of the jobs file: "<run folder><TAB><command>".
# A finished run is skipped; a training run's command holds --resume auto --requeue, so it starts
# or continues its run folder. SLURM sends USR1 {warning} s before the time limit (and TERM on
# preemption) to this shell, which exec has replaced by python: the run stops with a checkpoint,
# requeues this task and exits 75; the requeued task continues it. Resubmitting the array is safe.
set -euo pipefail
cd {repo}
line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {jobs})
run_dir=${{line%%$'\\t'*}}
command=${{line#*$'\\t'}}
if [ -f "$run_dir/results.json" ]; then echo "finished: $run_dir"; exit 0; fi
echo "$command"
eval "exec $command"
"""


@dataclass(frozen=True)
class ArrayOptions:
    """The SLURM flags of an array: tasks at once, CPUs and time per task, extra ``#SBATCH`` lines."""

    limit: int = 32
    cpus: int = 8
    time: str = "24:00:00"
    sbatch: tuple[str, ...] = ()


def write_array(lines: Sequence[tuple[Path | str, Sequence[str]]], out_dir: Path, name: str, options: ArrayOptions = ArrayOptions()) -> tuple[Path, Path]:
    """``<name>.jobs.tsv`` (one ``<run folder><TAB><command>`` line per task; a task without a run
    folder of its own gives a path that never holds results) and ``<name>.sbatch``, the array over it."""
    out_dir = Path(out_dir).resolve()
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    jobs = out_dir / f"{name}.jobs.tsv"
    jobs.write_text("".join(f"{run_dir}\t{shlex.join(command)}\n" for run_dir, command in lines))
    script = out_dir / f"{name}.sbatch"
    script.write_text(
        ARRAY_TEMPLATE.format(
            name=shlex.quote(name), last=len(lines) - 1, limit=options.limit, cpus=options.cpus, time=options.time,
            log_dir=out_dir / "logs", warning=SIGNAL_WARNING_S, extra="".join(f"#SBATCH {opt}\n" for opt in options.sbatch),
            repo=shlex.quote(str(cfg.REPO_ROOT)), jobs=shlex.quote(str(jobs)),
        )  # fmt: skip
    )
    return script, jobs


def visible_gpus() -> list[str]:
    """CUDA_VISIBLE_DEVICES if set, else every CUDA device; empty on a CPU-only machine."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]
