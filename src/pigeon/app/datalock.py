"""The data-directory lock: one pigeon owns a data directory's queue at a time.

    lock = DataDirLock(config.data_dir)
    lock.acquire()                   # DataDirInUse: another pigeon owns it (one line)
    ...
    held = await lock.wait(timeout, stop)   # `pigeon restart`: until the predecessor ends

Contract:
  * The lock is `fcntl.flock(LOCK_EX)` on `<data_dir>/pigeon.lock` (mode
    0600, docs/security.md), taken by the process that runs the queue
    manager before it opens the store as the queue's owner, and released
    only as that process ends (the kernel drops it with the last
    descriptor: a crash releases it too, so a lock file left behind never
    blocks a start). Worker processes forked by the main one share its
    descriptor, so the lock lasts until the last of them is gone.
  * The file holds the holder's pid and a newline, for the refusal and for
    operators; the pid is written only once the lock is held. The file
    itself is never deleted (unlinking a locked file would let a third
    process lock a new file of the same name).
  * `acquire()` refuses at once when another process holds the lock:
    `DataDirInUse`, whose text is the one line `pigeon serve` shows:
    "the data directory DIR is in use by pigeon (pid N); stop it first or
    use 'pigeon restart'" (app/exits.py: exit status 75, EX_TEMPFAIL).
  * `wait(timeout, stop)` is for a process started by `pigeon restart`:
    it polls (every 50 ms) until the lock is free and taken, `stop` is
    set, or `timeout` seconds pass; it logs once that it waits, naming the
    holder. It returns whether the lock is now held. `wait_blocking` is
    the same without an event loop (and without `stop`).
  * The descriptor is close-on-exec: the process `pigeon restart` execs
    does not inherit the lock; it waits for it like anyone else.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from pathlib import Path

__all__ = ["DataDirInUse", "DataDirLock", "LOCK_NAME"]

log = logging.getLogger("pigeon")

LOCK_NAME = "pigeon.lock"
_POLL = 0.05


class DataDirInUse(Exception):
    """Another pigeon owns this data directory (the text is the one line shown)."""


class DataDirLock:
    """flock() on `<data_dir>/pigeon.lock` (see the module contract)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> int | None:
        """The pid written by the holder (None: unreadable, or not written yet)."""
        try:
            text = self.path.read_bytes().decode("ascii", "replace").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when held (now or already)."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)  # the umask must not decide (docs/security.md)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def in_use(self) -> DataDirInUse:
        """The refusal naming the holder (see the module contract)."""
        pid = self.holder()
        who = f"pigeon (pid {pid})" if pid is not None else "another pigeon"
        return DataDirInUse(
            f"the data directory {self.data_dir} is in use by {who}; "
            "stop it first or use 'pigeon restart'"
        )

    def acquire(self) -> None:
        """Take the lock now or raise `DataDirInUse`."""
        if not self.try_acquire():
            raise self.in_use()

    def _waiting(self, timeout: float) -> float:
        log.info(
            "waiting for the previous pigeon (pid %s) to finish and release %s (at most %.0fs)",
            self.holder() or "?",
            self.path,
            timeout,
        )
        return time.monotonic() + timeout

    async def wait(self, timeout: float, stop: asyncio.Event | None = None) -> bool:
        """Poll for the lock (see the module contract); True once held."""
        if self.try_acquire():
            return True
        deadline = self._waiting(timeout)
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            await asyncio.sleep(_POLL)
            if self.try_acquire():
                return True
        return False

    def wait_blocking(self, timeout: float) -> bool:
        """`wait` before any event loop runs (the main process of `workers > 1`)."""
        if self.try_acquire():
            return True
        deadline = self._waiting(timeout)
        while time.monotonic() < deadline:
            time.sleep(_POLL)  # bounded by `timeout`
            if self.try_acquire():
                return True
        return False

    def release(self) -> None:
        """Drop the lock (the process is ending; a crash drops it too)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
