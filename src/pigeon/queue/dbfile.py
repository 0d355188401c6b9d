"""queue.db itself: its schema, its identity (the store id), its health, who
may own it, and the one way to change it (`transaction()`).

Contract:
  * `connect(path, synchronous=...)` opens queue.db in WAL mode in
    autocommit mode (isolation_level=None): nothing is written outside an
    explicit `transaction()`, so one batch is exactly one transaction.
  * `transaction(conn, what)` is THE way to change the database: BEGIN
    IMMEDIATE (the write lock is taken up front, so a transaction never
    fails half-way for a lock upgrade), COMMIT when the block ends, ROLLBACK
    when it raises. Any sqlite3.Error, from the block or from BEGIN/COMMIT,
    leaves as a `StoreError` ("<what>: <reason>", flags from
    `health.store_error`, the sqlite3 error as `__cause__`); other
    exceptions are re-raised after the rollback. No sqlite3 exception
    leaves the store.
  * `Db(conn, what)` is a connection shared between threads: `query()`
    reads and `transaction()` writes under one lock; both raise StoreError.
  * `prepare(conn, path, verify=..., owner=...)` readies an open
    connection: WAL mode, then in one `transaction()` the format version,
    the schema and the store id (queue/schema.py `ensure`: a newer format
    is refused with `QueueFormatError`, the owner upgrades an older one,
    a missing schema is created with a NEW store id). The store id is a
    random id kept in the `meta` table and written into the preamble of
    every content file committed under this database (pigeon/msgfile.py).
    Returns the `DbState` (queue/schema.py).
  * A damaged database is refused, never "repaired" by writing into it:
    `StoreCorrupt` (a `StoreError`) when SQLite says SQLITE_NOTADB or
    SQLITE_CORRUPT, or, with `verify=True`, when `PRAGMA quick_check`
    finds a problem. Its message is one line naming the file, the reason
    and the command that repairs it. `verify` costs a read of the whole
    database (0.1 s for 200,000 rows), so only the process that owns the
    queue (`pigeon serve`, `pigeon queue rebuild`) pays it, once at start-up;
    the others (sendmail, worker processes, `pigeon queue list` offline)
    see header and schema damage only.
  * Other SQLite errors (permissions, I/O) are `StoreError`, not corruption.
  * `lock_owner(root, exclusive=...)` flock()s <root>/owner.lock without
    waiting: shared by the serving pigeon for its whole life, exclusive by
    `pigeon queue rebuild`; `StoreBusy` when the other side holds it.
    Where flock() is unsupported it goes on without the lock.
  * `BatchLock(path)` is queue.lock plus an in-process lock: `shared()`
    for one committer batch (other processes' committers may run too),
    `exclusive()` for recovery, which must see no batch half-done in any
    process (queue/recovery.py, Rule 2).
  * `move_aside(path, label)` renames queue.db and its -wal/-shm companions
    to `queue.db.<label>-<UTC time>` (+ `-wal`, `-shm`, so SQLite can still
    open the copy for forensics); nothing is deleted.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pigeon.queue.health import store_error
from pigeon.queue.schema import DbState, ensure
from pigeon.vocab.errors import StoreError

try:
    import fcntl
except ImportError:  # not POSIX: no owner lock
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "BatchLock",
    "Db",
    "DbState",
    "DbTransaction",
    "StoreBusy",
    "StoreCorrupt",
    "connect",
    "prepare",
    "move_aside",
    "lock_owner",
    "open_lock_file",
    "transaction",
    "REPAIR_COMMAND",
]

REPAIR_COMMAND = "pigeon queue rebuild --from-files"

_CORRUPTION_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


class StoreCorrupt(StoreError):
    """queue.db is damaged; pigeon refuses to use it (see the contract)."""

    def __init__(self, path: Path, reason: str) -> None:
        data_dir = Path(path).parent.parent
        super().__init__(
            f"queue database {path} is damaged ({reason}); pigeon will not use it. "
            f"Repair: {REPAIR_COMMAND} --data-dir {data_dir} (moves it aside and rebuilds "
            f"the queue from the message files)"
        )
        self.path = Path(path)
        self.reason = reason


class StoreBusy(StoreError):
    """Another process holds the queue in a way that excludes this one
    (`pigeon queue rebuild` while pigeon runs, or the other way round)."""


def is_corruption(exc: BaseException) -> bool:
    """True for SQLite errors that mean "this file is damaged"."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _CORRUPTION_CODES


def prepare(conn: sqlite3.Connection, path: Path, *, verify: bool, owner: bool = False) -> DbState:
    """See the contract. `conn` must be in autocommit mode (isolation_level=None)."""
    what = f"queue database {path}"
    try:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            if verify:
                problems = [r[0] for r in conn.execute("PRAGMA quick_check(3)")]
                if problems != ["ok"]:
                    raise StoreCorrupt(path, "integrity check: " + "; ".join(problems))
        except sqlite3.Error as exc:
            raise store_error(what, exc) from exc
        with transaction(conn, what):
            return ensure(conn, path, owner=owner)
    except StoreCorrupt:
        raise
    except StoreError as exc:
        if exc.__cause__ is not None and is_corruption(exc.__cause__):
            raise StoreCorrupt(path, str(exc.__cause__)) from None
        raise


def connect(path: Path, *, synchronous: str) -> sqlite3.Connection:
    """queue.db in WAL mode and autocommit (see the contract); sqlite3.Error
    as SQLite raises it (open() turns it into StoreCorrupt or StoreError)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
    except BaseException:
        conn.close()
        raise
    return conn


def transaction(
    conn: sqlite3.Connection, what: str, lock: threading.Lock | None = None
) -> DbTransaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK (see the contract); with
    `lock`, held from before the BEGIN to after the COMMIT or ROLLBACK."""
    return DbTransaction(conn, what, lock)


class DbTransaction:
    """`transaction()`'s context manager: `dataformat.immediate()`'s BEGIN
    IMMEDIATE / COMMIT / ROLLBACK, with sqlite3 errors made StoreErrors. A
    class, not a generator: every message pays two or three of these on the
    way through the queue, and a @contextlib.contextmanager costs several
    times the calls."""

    __slots__ = ("_conn", "_what", "_lock")

    def __init__(
        self, conn: sqlite3.Connection, what: str, lock: threading.Lock | None = None
    ) -> None:
        self._conn = conn
        self._what = what
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        lock = self._lock
        if lock is not None:
            lock.acquire()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            if lock is not None:
                lock.release()
            if isinstance(exc, sqlite3.Error):
                raise store_error(self._what, exc) from exc
            raise
        return self._conn

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            if exc is None:
                try:
                    self._conn.execute("COMMIT")
                except BaseException as failed:  # the COMMIT itself failed
                    self._rollback()
                    if isinstance(failed, sqlite3.Error):
                        raise store_error(self._what, failed) from failed
                    raise
                return
            self._rollback()
            if isinstance(exc, sqlite3.Error):
                raise store_error(self._what, exc) from exc
            # any other exception passes unchanged
        finally:
            if self._lock is not None:
                self._lock.release()

    def _rollback(self) -> None:
        conn = self._conn
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")


class Db:
    """One connection used from several threads, one at a time (see the contract)."""

    __slots__ = ("conn", "lock")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def query(self, what: str, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """All rows of one read (StoreError on failure)."""
        with self.lock:
            try:
                return self.conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise store_error(what, exc) from exc

    def transaction(self, what: str) -> DbTransaction:
        """`transaction()` on this connection, holding its lock."""
        return DbTransaction(self.conn, what, self.lock)

    def close(self) -> None:
        """Close once no thread is inside a query or transaction: a later one
        gets "closed database" (a StoreError), never a crash. A scan thread the
        stopping manager abandoned (asyncio.to_thread runs on) may be inside
        one, and sqlite3 closing a connection in use crashes the process."""
        with self.lock:
            self.conn.close()


class BatchLock:
    """queue.lock and an in-process lock (see the contract). Where flock()
    fails (no POSIX, odd file systems) it goes on with the in-process lock."""

    def __init__(self, path: Path) -> None:
        self._fd: int | None = open_lock_file(path)
        self._threads = threading.Lock()

    def shared(self) -> _Held:
        """One committer batch."""
        return _Held(self, shared=True)

    def exclusive(self) -> _Held:
        """Recovery: no batch of any process is half-done meanwhile."""
        return _Held(self, shared=False)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Held:
    """One holding of a `BatchLock`: the in-process lock, then queue.lock
    (flock); released in the reverse order. A class rather than a generator:
    the committer takes it once per batch, i.e. per message when idle."""

    __slots__ = ("_batch", "_shared", "_locked")

    def __init__(self, batch: BatchLock, *, shared: bool) -> None:
        self._batch = batch
        self._shared = shared
        self._locked = False

    def __enter__(self) -> None:
        batch = self._batch
        batch._threads.acquire()
        fd = batch._fd
        if fcntl is not None and fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH if self._shared else fcntl.LOCK_EX)
                self._locked = True
            except OSError:
                pass
            except BaseException:
                batch._threads.release()
                raise

    def __exit__(self, *exc: object) -> None:
        batch = self._batch
        try:
            if self._locked and batch._fd is not None:
                fcntl.flock(batch._fd, fcntl.LOCK_UN)
        finally:
            self._locked = False
            batch._threads.release()


def move_aside(path: Path, label: str, now: float | None = None) -> Path | None:
    """Rename `path` (and its -wal, -shm) to `<path>.<label>-<UTC time>`;
    return the new name of the database, None when there was no database."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    target = path.with_name(f"{path.name}.{label}-{stamp}")
    moved = None
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            os.rename(src, target.with_name(target.name + suffix))
            if not suffix:
                moved = target
    return moved


def open_lock_file(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)


def lock_owner(root: Path, *, exclusive: bool) -> int:
    """flock() <root>/owner.lock (see the contract); return its descriptor."""
    fd = open_lock_file(root / "owner.lock")
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        if exclusive:
            raise StoreBusy(
                f"pigeon is running on the queue {root} (it holds "
                f"{root / 'owner.lock'}): stop it first"
            ) from None
        raise StoreBusy(
            f"a `pigeon queue rebuild` is working on the queue {root}: "
            "start pigeon when it has finished"
        ) from None
    except OSError:
        pass
    return fd
