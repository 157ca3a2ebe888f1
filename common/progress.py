"""Progress of long steps: a live bar on a terminal, a few plain lines in a log file.

Every long step (decoding, caching, text encoding, feature extraction, training and evaluation
epochs) opens its bar with :func:`bar` instead of tqdm. On a terminal that is a tqdm bar that
leaves nothing behind; when standard error is not a terminal (a SLURM log file, a pipe) it is a
:class:`LineProgress`, which prints one plain line at most every ``interval`` seconds
(``--progress-interval``, default a minute), so a log holds a handful of lines per step instead
of a carriage-return update ten times a second. Lines that must stay (one per epoch) go through
:func:`line`; the run's last line, its result, through :func:`result`.

:func:`console` sets this up for one command: ``quiet`` keeps only warnings, errors (standard
error) and the result line on the console; ``log_file`` receives a copy of every output line
(never a bar's carriage returns), whatever ``quiet`` hides from the console.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from common.errors import UserError

DEFAULT_INTERVAL = 60.0  # seconds between two progress lines of one step, off a terminal


class _State:
    interval: float = DEFAULT_INTERVAL
    quiet: bool = False
    bar_stream: IO[str] | None = None  # where terminal bars draw (the console's stderr, never a log file)
    result_stream: IO[str] | None = None  # the console's stdout (and the log file), even when quiet


_state = _State()


def on_terminal() -> bool:
    """Whether bars can redraw in place: standard error is an interactive terminal."""
    stream = _state.bar_stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """A progress "bar" for log files: ``desc: n/total unit (elapsed, rate)`` at most every ``interval`` seconds.

    Has the part of tqdm's interface the project uses: iteration, ``update``, ``set_postfix``,
    ``close`` and use as a context manager.
    """

    def __init__(self, iterable: Iterable | None, desc: str, total: int | None, unit: str, interval: float) -> None:
        self.iterable, self.desc, self.unit, self.interval = iterable, desc, unit, interval
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.monotonic()

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __len__(self) -> int:
        return self.total or 0

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            line(self.status(now))

    def status(self, now: float | None = None) -> str:
        elapsed = (time.monotonic() if now is None else now) - self.start
        of = f"/{self.total}" if self.total else ""
        rate = f", {self.n / elapsed:.1f} {self.unit}/s" if elapsed > 0 else ""
        postfix = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {self.n}{of} {self.unit} ({elapsed:.0f}s{rate}{postfix})"

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        pass


def bar(iterable: Iterable | None = None, *, desc: str, total: int | None = None, unit: str = "it", enabled: bool = True):
    """The progress display of one long step: tqdm on a terminal, :class:`LineProgress` elsewhere.

    ``enabled=False`` (another rank, a step too short to report) and ``--quiet`` show nothing.
    """
    if not enabled or _state.quiet:
        return LineProgress(iterable, desc, total, unit, math.inf)
    if on_terminal():
        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True, file=_state.bar_stream or sys.stderr)
    return LineProgress(iterable, desc, total, unit, _state.interval)


def line(text: str) -> None:
    """One output line (an epoch's summary, a progress line): above any open terminal bar; dropped by ``--quiet``."""
    if _state.quiet:
        print(text, file=sys.stdout, flush=True)  # the log file's copy (stdout holds only the log file then)
        return
    if on_terminal():
        tqdm.write(text, file=sys.stdout)
        sys.stdout.flush()
    else:
        print(text, flush=True)


def result(text: str) -> None:
    """The run's result line: shown even with ``--quiet``."""
    print(text, file=_state.result_stream or sys.stdout, flush=True)


class _Null:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class _Tee:
    """Writes to the console stream and the log file; a terminal only if the console is."""

    def __init__(self, console: Any, log: IO[str]) -> None:
        self.console, self.log = console, log

    def write(self, text: str) -> int:
        self.console.write(text)
        self.log.write(text)
        return len(text)

    def flush(self) -> None:
        self.console.flush()
        self.log.flush()

    def isatty(self) -> bool:
        try:
            return bool(self.console.isatty())
        except (AttributeError, ValueError):
            return False

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ...: the console's
        return getattr(self.console, name)


@contextmanager
def console(interval: float = DEFAULT_INTERVAL, quiet: bool = False, log_file: str | Path | None = None) -> Iterator[None]:
    """Route one command's output: progress every ``interval`` s off a terminal, ``quiet``, a ``log_file`` copy."""
    saved = (sys.stdout, sys.stderr, dict(vars(_state)))
    out, err = sys.stdout, sys.stderr
    log = None
    if log_file is not None:
        path = Path(log_file).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            log = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise UserError(f"cannot write the log file {path}: {exc.strerror or exc}") from exc
    shown_out = _Null() if quiet else out
    _state.interval, _state.quiet, _state.bar_stream = interval, quiet, err
    _state.result_stream = out if log is None else _Tee(out, log)
    sys.stdout = shown_out if log is None else _Tee(shown_out, log)
    sys.stderr = err if log is None else _Tee(err, log)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved[0], saved[1]
        for key, value in saved[2].items():
            setattr(_state, key, value)
        for key in set(vars(_state)) - set(saved[2]):
            delattr(_state, key)
        if log is not None:
            log.close()
