"""Exclusive locks on a build's folders, so two runs never write the same store or output at once.

A lock is an advisory ``flock`` on a small file that names its holder (process id, host, start time,
command line). The operating system releases it when the holder exits, even when it is killed, so a
lock is never left stale; a second run asking for a held lock fails at once with the holder's name.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path


class BuildLockedError(RuntimeError):
    """Another run holds the lock of this store or output folder."""


class BuildLock:
    """An exclusive, non-blocking lock on ``path`` (a context manager).

    Args:
        path: The lock file (created with its folder; never deleted, so no two runs lock two files).
        what: What the lock guards, for the error message (e.g. ``"the output folder out/"``).

    Raises:
        BuildLockedError: on enter, when another run holds the lock.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what
        self._file: int | None = None

    def __enter__(self) -> BuildLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise BuildLockedError(
                f"{self.what} is in use by another run ({holder}); wait for it to finish or stop it, then "
                f"rerun. (Lock file {self.path}: released when its holder exits, even if killed.)"
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(sys.argv)[:512],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._file = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            os.ftruncate(self._file, 0)
            fcntl.flock(self._file, fcntl.LOCK_UN)
            os.close(self._file)
            self._file = None
