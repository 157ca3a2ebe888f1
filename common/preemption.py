"""Stop requests by signal: what a cluster sends before it preempts a job or its time runs out.

SLURM sends SIGTERM on preemption or cancellation and, with ``--signal=B:USR1@120``, SIGUSR1 two
minutes before the time limit. :func:`handling` turns each chosen signal into a request that the
training loop reads with :func:`requested` after each step: it finishes that step, writes its
checkpoint and raises :class:`Stopped`; the runner then exits with :data:`EXIT_STOPPED` (and,
with ``--requeue``, requeues the SLURM job first, :mod:`runner.requeue`). The handler only sets a
flag (no I/O inside a signal handler); nothing is lost between two polls. A second signal does
not wait: it interrupts the run at once, as Ctrl-C does (exit 130, the last checkpoint kept).

Every other long pass (decoding images, building the image cache, the mapping's statistics pass,
evaluation, precomputed outputs) draws its items through :func:`stoppable`, which raises
:class:`Stopped` before the next item once a stop is requested: the run stops within one batch
(or one image) and its last checkpoint, written before the pass began, is where ``--resume``
continues: the pass is redone from its start.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist

from common.errors import UserError

# "stopped to be resumed": sysexits.h's EX_TEMPFAIL ("a temporary failure; the user is invited to
# retry"), distinct from success (0), a failure (1), a user error (2) and Ctrl-C (130)
EXIT_STOPPED = 75

DEFAULT_SIGNALS = "TERM,USR1"
NAMES = ("TERM", "USR1", "USR2", "HUP", "INT")  # what --stop-signals accepts (without the SIG prefix)

_requested: str | None = None


class Stopped(Exception):
    """A requested stop: raised by the training loop after its checkpoint is on disk, or by
    :func:`stoppable` in any other pass (``checkpoint`` None: the last one written stays, named by
    the runner through :meth:`kept`)."""

    def __init__(self, signal_name: str, where: str, checkpoint: str | None = None) -> None:
        super().__init__()
        self.signal_name, self.where, self.checkpoint = signal_name, where, checkpoint
        self.outcome = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint was written"

    def kept(self, last_checkpoint: str | None) -> None:
        """Say what a stop outside a training step leaves: the last checkpoint, or none yet."""
        if self.checkpoint is None:
            self.outcome = (
                f"the last checkpoint {last_checkpoint} is kept (the interrupted pass is redone)"
                if last_checkpoint else "the run had no checkpoint yet: it starts again"
            )

    def __str__(self) -> str:
        return f"stopped by SIG{self.signal_name} {self.where}; {self.outcome}"


def parse_signals(text: str) -> list[signal.Signals]:
    """``TERM,USR1`` (with or without ``SIG``; ``none`` = no handler) as signals; a wrong name is a user error."""
    names = [n.strip().upper().removeprefix("SIG") for n in text.split(",") if n.strip()]
    if names == ["NONE"]:
        return []
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise UserError(f"--stop-signals: unknown signal {unknown[0]!r}; choose from {', '.join(NAMES)} (comma-separated) or none")
    return [getattr(signal, f"SIG{n}") for n in dict.fromkeys(names)]


def requested() -> str | None:
    """The name of the first stop signal received (``USR1``), or None: polled by the loop after each step."""
    return _requested


def request(name: str) -> None:
    """Record a stop request, as a signal does (tests, or a loop that decides to stop itself)."""
    global _requested
    if _requested is None:
        _requested = name


T = TypeVar("T")


def agreed(name: str | None) -> str | None:
    """``name`` (this process's request), or under torch.distributed the request of any rank: one
    all-reduce, which every rank must make at the same point."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return name
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    asked = torch.tensor([float(name is not None)], device=device)
    dist.all_reduce(asked)
    return name or ("TERM" if float(asked) > 0 else None)


def stoppable(items: Iterable[T], where: str, shared: int | None = None) -> Iterator[T]:
    """``items``, raising :class:`Stopped` before the next one once a stop was requested.

    ``shared``: for a pass whose ranks reduce their results together, the number of items every
    rank draws; the ranks agree before each of them (one all-reduce each under torch.distributed),
    so that no rank waits at the pass's reduction for one that stopped, and finish the few items
    past them (a rank's last batch) without asking. None: each process reads its own request
    (decoding, which every rank does alone).
    """
    for i, item in enumerate(items):
        name = _requested if shared is None else agreed(_requested) if i < shared else None
        if name:
            raise Stopped(name, where)
        yield item


def _handle(signum: int, frame: object) -> None:
    if _requested is not None:  # asked twice: stop now, as Ctrl-C does (the last checkpoint stays)
        raise KeyboardInterrupt
    request(signal.Signals(signum).name.removeprefix("SIG"))


@contextmanager
def handling(signals: Sequence[signal.Signals]) -> Iterator[None]:
    """Turn ``signals`` into stop requests for the duration; restores the old handlers. Outside the
    main thread (where Python cannot install handlers) it installs none."""
    global _requested
    _requested = None
    if threading.current_thread() is not threading.main_thread():
        signals = ()
    previous = {s: signal.signal(s, _handle) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _requested = None
