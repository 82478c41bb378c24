"""The OS lock that makes one process at a time the owner of a data home's chroma directory.

Chroma's on-disk index is not process-safe: two processes writing it can tear it, and a
process reading it keeps a stale copy in memory. So exactly one process opens it: the first
that needs to write (a dreamer, ``reindex``, ``forget``), holding an exclusive ``flock`` on
``index.lock`` next to the directory until it closes its ``DreamMemory`` (or dies: the OS then
releases the lock). Any other process that needs to write waits at most ``timeout`` seconds
and is refused with the holder's pid and command; one that only recalls reads the ledger.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from langdream.errors import IndexLockedError

_POLL_SECONDS = 0.05
# flock is per open file, so two DreamMemory objects of one process would lock each other out;
# the lock is the process's, shared by its objects: lock path -> (fd, holders).
_held: dict[str, tuple[int, int]] = {}
_held_lock = threading.Lock()


class IndexLock:
    """An exclusive, non-blocking ``flock`` on ``path``, retried for up to ``timeout`` seconds."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._key = str(path.absolute())
        self._holding = False
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        return self._holding

    def try_acquire(self) -> bool:
        """Take the lock if it is free now; True when this process holds it."""
        with self._mutex:
            if self._holding:
                return True
            with _held_lock:
                if self._key in _held:
                    fd, holders = _held[self._key]
                    _held[self._key] = (fd, holders + 1)
                    self._holding = True
                    return True
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    return False
                # Who holds it, for the error other processes get (the lock itself is the flock).
                os.ftruncate(fd, 0)
                holder = {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "since": time.time(),
                    "command": " ".join(sys.argv)[:200],
                }
                os.write(fd, json.dumps(holder).encode())
                _held[self._key] = (fd, 1)
                self._holding = True
                return True

    def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; else raise ``IndexLockedError``."""
        deadline = time.monotonic() + self.timeout
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                raise IndexLockedError(
                    f"the chroma index {self.path.parent / 'chroma'} is owned by {self.holder()}; "
                    f"only one process may write it (waited {self.timeout:g}s)",
                    hint="let that process finish (a dream or reindex), or run this command in it; "
                    "other processes can still record and recall (recall reads the ledger)",
                )
            time.sleep(_POLL_SECONDS)

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            info = {}
        if not info:
            return "another process"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
        return f"process {info.get('pid')} on {info.get('host')} ({info.get('command')!r}, since {since})"

    def release(self) -> None:
        with self._mutex, _held_lock:
            if not self._holding:
                return
            self._holding = False
            fd, holders = _held.pop(self._key)
            if holders > 1:
                _held[self._key] = (fd, holders - 1)
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


class ServerIndexLock:
    """The lock of an index kept by a chroma server: the server serializes its clients' requests,
    so there is no file to lock and every process holds this one (all of them may write and query)."""

    held = True

    def try_acquire(self) -> bool:
        return True

    def acquire(self) -> None:
        return None

    def release(self) -> None:
        return None

    def holder(self) -> str:
        return "every process (a chroma server serializes its clients)"
