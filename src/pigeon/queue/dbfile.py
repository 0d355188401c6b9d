"""queue.db itself: its schema, its identity (the store id), its health, and
who may own it.

Contract:
  * `prepare(conn, path, verify=...)` readies an open connection: WAL mode,
    the schema, and the store id, a random id kept in the `meta` table and
    written into the preamble of every content file committed under this
    database (pigeon/msgfile.py). Returns a `DbState`:
      - `created`: there was no queue table (the file was missing, 0 bytes,
        or an SQLite database without our schema): the schema and a NEW
        store id were made. Files already in msg/ then all carry another
        store id, so recovery rebuilds them (queue/store.py);
      - `upgraded`: a queue table without a store id (written by the version
        before the store id existed): a store id is added, rows are kept.
    The check-and-create runs in one BEGIN IMMEDIATE transaction, so
    processes opening the same new database at once agree on one store id.
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
  * `move_aside(path, label)` renames queue.db and its -wal/-shm companions
    to `queue.db.<label>-<UTC time>` (+ `-wal`, `-shm`, so SQLite can still
    open the copy for forensics); nothing is deleted.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from pigeon.msgfile import new_store_id
from pigeon.queue.spool import StoreError, _store_error

try:
    import fcntl
except ImportError:  # not POSIX: no owner lock
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DbState",
    "StoreBusy",
    "StoreCorrupt",
    "prepare",
    "move_aside",
    "lock_owner",
    "open_lock_file",
    "REPAIR_COMMAND",
]

REPAIR_COMMAND = "pigeon queue rebuild --from-files"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS queue (
        queue_id     TEXT PRIMARY KEY,
        state        TEXT NOT NULL,
        next_attempt REAL NOT NULL,
        envelope     TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS queue_due ON queue (state, next_attempt)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
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


@dataclass(frozen=True, slots=True)
class DbState:
    store_id: str
    created: bool = False  # no schema was there: missing, empty or foreign file
    upgraded: bool = False  # rows of the older format, store id just added


def is_corruption(exc: BaseException) -> bool:
    """True for SQLite errors that mean "this file is damaged"."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _CORRUPTION_CODES


def prepare(conn: sqlite3.Connection, path: Path, *, verify: bool) -> DbState:
    """See the contract. `conn` must be in autocommit mode (isolation_level=None)."""
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        if verify:
            problems = [r[0] for r in conn.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise StoreCorrupt(path, "integrity check: " + "; ".join(problems))
        conn.execute("BEGIN IMMEDIATE")
        try:
            state = _schema_and_id(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        if is_corruption(exc):
            raise StoreCorrupt(path, str(exc)) from None
        raise _store_error(f"queue database {path}", exc) from None
    return state


def _schema_and_id(conn: sqlite3.Connection) -> DbState:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    for statement in _SCHEMA:
        conn.execute(statement)
    if "queue" not in tables:
        # A new queue: whatever store id a leftover meta table held belongs
        # to rows that are gone, so it must not vouch for files any more.
        store_id = new_store_id()
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('store_id', ?)", (store_id,))
        return DbState(store_id, created=True)
    row = conn.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()
    if row is not None:
        return DbState(row[0])
    store_id = new_store_id()
    conn.execute("INSERT INTO meta (key, value) VALUES ('store_id', ?)", (store_id,))
    return DbState(store_id, upgraded=True)


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
