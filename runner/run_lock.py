"""One writer per run folder: an exclusive ``flock`` on a small file beside the folder.

The operating system drops the lock when its process ends, however it ends (exit, exception,
Ctrl-C, ``kill -9``), so a killed run never leaves a stale lock. The file names its holder
(process id, host, start time) for the message a second run gets. It lives beside the run folder
(``.<run id>.lock``), not inside, so the folder itself can be created, moved aside and put back
while the lock is held, and it is removed when released. A process that opened the file just
before its holder removed it would lock a file no longer in the folder; acquiring therefore
checks that the locked file is still the one at the path and tries again otherwise.

``flock`` works on local file systems and, on Linux, on NFS (as a POSIX lock, seen by every
client). On a file system without locks the run goes ahead unlocked, with a warning.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from common.errors import UserError

_ATTEMPTS = 20  # the lock file replaced under us this many times in a row: give up


class RunLock:
    """An acquired lock; :meth:`release` (or the end of the process) frees it."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd  # None: the file system has no locks

    @classmethod
    def acquire(cls, path: Path, folder: Path) -> RunLock:
        """Lock ``path`` at once or fail with a :class:`UserError` naming the holder of ``folder``."""
        for _ in range(_ATTEMPTS):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except FileNotFoundError:  # the holder removed its empty parent folder: make it again
                path.parent.mkdir(parents=True, exist_ok=True)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_holder(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UserError(
                        f"run folder {folder} is in use by {holder}; wait for it to end, "
                        f"or use --run-name NAME for another folder"
                    ) from exc
                print(f"warning: cannot lock {path} ({exc.strerror}); nothing stops a second run from writing into {folder}", file=sys.stderr)
                return cls(path, None)
            if _same_file(path, fd):
                _write_holder(fd)
                return cls(path, fd)
            os.close(fd)  # locked a file its holder had just removed: try the one at the path now
        raise UserError(f"cannot lock {path}: the file keeps being replaced by other processes")

    def release(self) -> None:
        """Remove the file, then unlock it (in this order, see the module docstring)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # a file left behind is harmless: the next run locks and reuses it
        os.close(self._fd)
        self._fd = None


def _same_file(path: Path, fd: int) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _write_holder(fd: int) -> None:
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
    except OSError:
        pass  # the lock holds without the note; a second run then names no process


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode())
        return f"process {holder['pid']} on {holder['host']} (running since {holder['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
