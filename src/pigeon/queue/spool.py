"""Spool files and queue IDs: the part of the queue the SMTP side touches.

Contract:
  * `SpoolFile` is `tmp/<queue_id>` being written by one SMTP transaction:
    append-only, buffered, cheap enough to use from the event loop (no fsync
    here: the committer in `pigeon.queue.store` syncs it at commit).
  * A spool ends exactly one way: committed (`QueueStore.commit_async`) or
    discarded (`discard()`, idempotent, never raises). A spool that ends
    neither way (the process died) is removed by `QueueStore.recover()`.
  * Queue IDs are 15 characters of Crockford base32 ([0-9A-Z] without
    I L O U): 10 of milliseconds since the epoch, 2 of a per-millisecond
    counter, 3 random. They sort by arrival within a process, are unique
    across processes with overwhelming probability (the file is created with
    O_EXCL anyway), and are safe as file names everywhere.
  * Errors are `StoreError`; `.disk_full` tells ENOSPC/EDQUOT/SQLITE_FULL
    apart (the SMTP side answers 452 4.3.1 rather than 451 4.3.0).
"""
from __future__ import annotations

import errno
import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pigeon.queue.store import QueueStore

# Crockford base32: digits sort before letters in ASCII, so IDs made of it
# sort by creation time; no I/L/O/U, so they are easy to read aloud.
_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_SPOOL_BUFFER = 64 * 1024

# Seeded once from the OS; a syscall per ID (secrets) cost ~0.2 ms on a busy
# machine. The tail only separates processes started in the same millisecond.
_RNG = random.Random()


class StoreError(Exception):
    """A queue operation failed; nothing was half-recorded.

    `disk_full` is True when the cause was ENOSPC/EDQUOT (or SQLITE_FULL): the
    SMTP side answers 452 4.3.1 instead of 451 4.3.0.
    """

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


class CorruptEntry(StoreError):
    """The entry was unreadable and has been moved to state 'corrupt'."""


def _to_b32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        out.append(_B32[value & 31])
        value >>= 5
    return "".join(reversed(out))


class _IdGenerator:
    """Queue IDs: 10 chars of milliseconds + 2 of counter + 3 random = 15 chars.

    Sortable by time within a process (the counter breaks ties inside one
    millisecond; if it overflows we borrow the next millisecond), unique across
    processes by the random tail, and made only of [0-9A-Z] so safe as a file
    name on any file system.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def next(self) -> str:
        with self._lock:
            ms = int(time.time() * 1000)
            if ms <= self._last_ms:
                ms = self._last_ms
                self._counter += 1
                if self._counter >= 32 * 32:
                    ms += 1
                    self._counter = 0
            else:
                self._counter = 0
            self._last_ms = ms
            counter = self._counter
        return _to_b32(ms, 10) + _to_b32(counter, 2) + _to_b32(_RNG.getrandbits(15), 3)


class SpoolFile:
    """A message being received: `tmp/<queue_id>`, buffered, append-only.

    Cheap to create and write from the event loop (writes go to a 64 KiB
    buffer and the page cache; the expensive fsync happens in the committer).
    """

    def __init__(self, store: "QueueStore", queue_id: str, path: Path, fh) -> None:
        self.queue_id = queue_id
        self.path = path
        self._store = store
        self._fh = fh
        self.size = 0
        self._state = "open"            # open -> committing -> done | discarded

    def write(self, data: bytes) -> None:
        """Append `data`. Raises `StoreError` (disk_full on ENOSPC) on failure."""
        if self._state != "open":
            raise StoreError(f"spool {self.queue_id} is {self._state}")
        try:
            self._fh.write(data)
        except OSError as e:
            raise _store_error(f"spool write {self.queue_id}", e) from e
        self.size += len(data)

    def head(self, limit: int = 65536) -> bytes:
        """The first `limit` octets written so far (for header checks before commit)."""
        self._fh.flush()
        with open(self.path, "rb") as f:
            return f.read(limit)

    def discard(self) -> None:
        """Close and unlink the spool file. Idempotent; never raises."""
        if self._state in ("discarded", "done", "committing"):
            return
        self._state = "discarded"
        self._close_quietly()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        self._store._spool_finished(self.queue_id)

    def _close_quietly(self) -> None:
        try:
            self._fh.close()
        except OSError:
            pass


def _store_error(what: str, e: BaseException) -> StoreError:
    disk_full = False
    if isinstance(e, OSError):
        disk_full = e.errno in _DISK_FULL_ERRNOS
    elif isinstance(e, sqlite3.Error):
        disk_full = getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return StoreError(f"{what}: {e}", disk_full=disk_full)
