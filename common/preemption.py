"""Stop requests by signal: what a cluster sends before it preempts a job or its time runs out.

SLURM sends SIGTERM on preemption or cancellation and, with ``--signal=B:USR1@120``, SIGUSR1 two
minutes before the time limit. :func:`handling` turns each chosen signal into a request that the
training loop reads with :func:`requested` after each step: it finishes that step, writes its
checkpoint and raises :class:`Stopped`; the runner then exits with :data:`EXIT_STOPPED` (and,
with ``--requeue``, requeues the SLURM job first, :mod:`runner.requeue`). The handler only sets a
flag (no I/O inside a signal handler); nothing is lost between two polls. A second signal does
not wait: it interrupts the run at once, as Ctrl-C does (exit 130, the last checkpoint kept).
"""
from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from common.errors import UserError

# "stopped to be resumed": sysexits.h's EX_TEMPFAIL ("a temporary failure; the user is invited to
# retry"), distinct from success (0), a failure (1), a user error (2) and Ctrl-C (130)
EXIT_STOPPED = 75

DEFAULT_SIGNALS = "TERM,USR1"
NAMES = ("TERM", "USR1", "USR2", "HUP", "INT")  # what --stop-signals accepts (without the SIG prefix)

_requested: str | None = None


class Stopped(Exception):
    """Raised by the training loop after the checkpoint of a requested stop is on disk."""

    def __init__(self, signal_name: str, where: str, checkpoint: str) -> None:
        super().__init__(f"stopped by SIG{signal_name} {where}; checkpoint {checkpoint}")
        self.signal_name, self.where, self.checkpoint = signal_name, where, checkpoint


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


def _handle(signum: int, frame: object) -> None:
    if _requested is not None:  # asked twice: stop now, as Ctrl-C does (the last checkpoint stays)
        raise KeyboardInterrupt
    request(signal.Signals(signum).name.removeprefix("SIG"))


@contextmanager
def handling(signals: Sequence[signal.Signals]) -> Iterator[None]:
    """Turn ``signals`` into stop requests for the duration (main thread only); restores the old handlers."""
    global _requested
    _requested = None
    previous = {s: signal.signal(s, _handle) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _requested = None
