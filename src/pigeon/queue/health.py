"""Storage health: is the queue's (or the mailboxes') storage failing right now?

Contract:
  * `is_storage_fault(exc)` tells storage faults apart from other errors:
    an OSError with ENOSPC, EDQUOT, EIO, EROFS or EFBIG; an SQLite error
    whose primary code is SQLITE_FULL, SQLITE_IOERR (a failed write or
    fsync), SQLITE_READONLY or SQLITE_CANTOPEN; a `StoreError` made from
    one of those (`.storage_fault`). These are expected conditions of a
    full or failing disk, never bugs: they are logged without a traceback.
  * `store_error(what, exc)` is the one place where a backend exception
    (OSError, sqlite3.Error) becomes the `StoreError` the queue interfaces
    raise (queue/api.py): `.disk_full` for ENOSPC/EDQUOT/SQLITE_FULL (the
    SMTP side answers 452 4.3.1 rather than 451 4.3.0), `.storage_fault`
    as `is_storage_fault` says. Its message is "<what>: <reason>" for the
    log (CONTRIBUTING.md, rule 6); the original stays its `__cause__`.
  * `StorageHealth(area)` is told of every storage fault (`failed(exc)`)
    and of writes that prove the storage works again (`succeeded()`: a
    commit of new mail, the queue manager's probe file, a Maildir
    delivery), from any thread (the store's committer thread, the queue
    manager's event loop).
  * Rule 1 (one line each way): the first fault of an episode logs ONE
    error line, "<area> storage failing: <reason>", and makes the area
    `degraded`; later faults of the episode are only counted (debug log).
    A success `quiet` seconds or more after the last fault ends the episode
    with ONE line, "<area> storage recovered after N s (M failed writes)".
    A success sooner than that (a small write fitting where a big one did
    not) keeps the episode open, so a disk hovering at full does not flood
    the log with failing/recovered pairs.
  * `snapshot()` is what `pigeon status` and the metrics show: degraded,
    since (Unix time), reason, failures in this episode, episodes so far.
  * `on_episode`: called (from the thread that saw the fault) when an
    episode starts, so the queue manager wakes up and probes for the
    recovery even when the fault was seen by the SMTP side.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from pigeon.fsutil import STORAGE_ERRNOS
from pigeon.vocab.errors import StoreError

__all__ = [
    "StorageHealth",
    "is_storage_fault",
    "store_error",
    "STORAGE_ERRNOS",
    "RECOVERY_QUIET",
]

log = logging.getLogger("pigeon.queue")

_SQLITE_STORAGE = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN}
)

_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})

#: Seconds without a fault before a success counts as recovery (Rule 1).
RECOVERY_QUIET = 3.0


def is_storage_fault(exc: BaseException) -> bool:
    """True when `exc` says the storage failed (see the module contract)."""
    if getattr(exc, "storage_fault", False):
        return True
    if isinstance(exc, OSError):
        return exc.errno in STORAGE_ERRNOS
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and (code & 0xFF) in _SQLITE_STORAGE
    return False


def store_error(what: str, exc: BaseException) -> StoreError:
    """`exc` (OSError, sqlite3.Error, ...) as the StoreError to raise (see the
    contract); raise it `from exc`."""
    if isinstance(exc, StoreError):
        return exc
    disk_full = False
    if isinstance(exc, OSError):
        disk_full = exc.errno in _DISK_FULL_ERRNOS
    elif isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        disk_full = code is not None and (code & 0xFF) == sqlite3.SQLITE_FULL
    return StoreError(f"{what}: {exc}", disk_full=disk_full, storage_fault=is_storage_fault(exc))


def describe(exc: BaseException) -> str:
    """A short reason for log lines: the strerror of an OSError, else the text."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class StorageHealth:
    """Degraded/healthy state of one storage area; see the module contract."""

    def __init__(
        self, area: str, *, quiet: float = RECOVERY_QUIET, clock: Callable[[], float] = time.time
    ) -> None:
        self.area = area
        self.quiet = quiet
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None  # start of the episode; None: healthy
        self._last_fault = 0.0
        self._reason = ""
        self._failures = 0
        self.episodes = 0
        self.on_episode: Callable[[], None] | None = None

    @property
    def degraded(self) -> bool:
        return self._since is not None

    @property
    def since(self) -> float | None:
        """When the current episode started (None: healthy)."""
        return self._since

    def failed(self, exc: BaseException | str) -> bool:
        """Record a storage fault; True when it started an episode (and was logged)."""
        reason = exc if isinstance(exc, str) else describe(exc)
        with self._lock:
            now = self._clock()
            self._last_fault = now
            self._failures += 1
            if self._since is not None:
                log.debug("%s storage still failing: %s", self.area, reason)
                return False
            self._since, self._reason, self.episodes = now, reason, self.episodes + 1
        log.error("%s storage failing: %s; writes are retried until it recovers", self.area, reason)
        if self.on_episode is not None:
            self.on_episode()
        return True

    def succeeded(self) -> bool:
        """Record a successful write; True when it ended an episode (and was logged)."""
        if self._since is None:  # the common case: no lock, no clock
            return False
        with self._lock:
            now = self._clock()
            if self._since is None or now - self._last_fault < self.quiet:
                return False
            lasted, failures = now - self._since, self._failures
            self._since, self._reason, self._failures = None, "", 0
        log.info("%s storage recovered after %.0fs (%d failed writes)", self.area, lasted, failures)
        return True

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "degraded": self._since is not None,
                "since": self._since,
                "reason": self._reason,
                "failures": self._failures,
                "episodes": self.episodes,
            }
