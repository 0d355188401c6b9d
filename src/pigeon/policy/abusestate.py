"""What the abuse controls remember across restarts: `<data_dir>/abuse.db`.

The rate limits' token buckets and the greylist's triplets must hold across
a restart (a client over its rate must not be let off by `pigeon restart`,
a greylisted sender must pass when it retries after one). They are read
and changed on the event loop at every connection and MAIL, so they live in
memory and are written to disk behind, in batches, by a thread.

Contract:
  * `AbuseState(path).open()` reads every row of the file (creating it,
    mode 0600) into memory; `table(kind)` is the `StateTable` of one kind
    of entry ("bucket", "greylist", ...): `get(key)` a tuple of three
    floats or None, `put(key, values)`, `delete(key)`. They never do I/O.
  * Changed entries are written by one writer thread every
    `flush_interval` seconds, all of them in one SQLite transaction; the
    event loop never waits for the disk. `flush()` writes now (tests,
    `close()`); `close()` writes what is left and stops the thread. A crash
    loses at most the last `flush_interval` of changes: the worst that
    does is a client counted a little less, or greylisted once more.
    `AbuseState.memory()` has the tables and no file (tests, tools).
  * Bounded memory and file: each table keeps at most `max_entries`
    entries; past it the least recently used is dropped from memory and
    from the file. Callers also `delete` what has expired.
  * The file is a cache of decisions, not mail: a file that cannot be read
    (damaged, or of a schema version this pigeon does not know) is logged
    once and replaced by an empty one; one that cannot be opened (locked
    past the busy timeout, no permission) is logged and the state is kept
    in memory only. Nothing accepted depends on it.
    With a shared store (`[queue] store` a postgresql:// URL) the same
    tables are kept by `pigeon.policy.sharedstate.PgAbuseState` instead, which
    syncs them with the database every node uses (app/wiring.py chooses).
    Worker processes (`workers` > 1) each keep their own tables over the
    same file (SQLite serialises the writers; the last write of a key wins),
    so each counts what it sees, as the other [limits] are per process.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

from pigeon.fsutil import ensure_file

__all__ = ["AbuseState", "Counters", "StateTable", "FILE_NAME"]

log = logging.getLogger("pigeon.policy")

FILE_NAME = "abuse.db"
SCHEMA_VERSION = 1
FLUSH_INTERVAL = 1.0
MAX_ENTRIES = 100_000

Values = tuple[float, float, float]

_SCHEMA = """CREATE TABLE IF NOT EXISTS state (
    kind TEXT NOT NULL, key TEXT NOT NULL, a REAL, b REAL, c REAL,
    PRIMARY KEY (kind, key)) WITHOUT ROWID"""


class _Owner(Protocol):
    def changed(self, kind: str, key: str, values: Values | None) -> None: ...

    def evicted(self, kind: str, key: str) -> None: ...


class Counters(Protocol):
    """What the policy checks use of their state: `AbuseState` (embedded) or
    `pigeon.policy.sharedstate.PgAbuseState` (shared by a cluster's nodes)."""

    def table(self, kind: str) -> StateTable: ...

    def close(self) -> None: ...


class StateTable:
    """One kind of entry, in memory (module contract)."""

    def __init__(self, state: _Owner, kind: str, max_entries: int) -> None:
        self._state = state
        self.kind = kind
        self.max_entries = max_entries
        self._rows: OrderedDict[str, Values] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: str) -> Values | None:
        return self._rows.get(key)

    def put(self, key: str, values: Values) -> None:
        rows = self._rows
        rows[key] = values
        rows.move_to_end(key)
        self._state.changed(self.kind, key, values)
        while len(rows) > self.max_entries:
            old, _ = rows.popitem(last=False)
            self._state.evicted(self.kind, old)

    def delete(self, key: str) -> None:
        if self._rows.pop(key, None) is not None:
            self._state.changed(self.kind, key, None)

    def _load(self, key: str, values: Values) -> None:
        rows = self._rows
        rows[key] = values
        while len(rows) > self.max_entries:  # bounded, whatever is loaded
            rows.popitem(last=False)


class AbuseState:
    """`<data_dir>/abuse.db` in memory, written behind (module contract)."""

    def __init__(
        self,
        path: Path | None,
        *,
        flush_interval: float = FLUSH_INTERVAL,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.flush_interval = flush_interval
        self.max_entries = max_entries
        self._tables: dict[str, StateTable] = {}
        self._dirty: dict[tuple[str, str], Values | None] = {}
        self._lock = threading.Lock()  # guards _dirty
        self._write_lock = threading.Lock()  # one flush at a time
        self._wake = threading.Event()
        self._closed = False
        self._db: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> AbuseState:
        return cls(Path(data_dir) / FILE_NAME)

    @classmethod
    def memory(cls) -> AbuseState:
        """Tables without a file (tests, tools): nothing outlives the process."""
        return cls(None)

    def open(self) -> AbuseState:
        if self.path is None:
            return self
        try:
            rows = self._connect()
        except sqlite3.OperationalError as exc:  # locked, unreadable: not the file's fault
            log.warning(
                "%s could not be opened (%s): the abuse controls keep their state "
                "in memory only until the next start",
                self.path,
                exc,
            )
            self.path = None
            return self
        except sqlite3.DatabaseError as exc:  # damaged, or a schema we do not know
            log.warning("%s could not be read (%s): starting it afresh", self.path, exc)
            self._discard()
            rows = self._connect()
        for kind, key, a, b, c in rows:
            self.table(kind)._load(key, (a, b, c))
        self._thread = threading.Thread(target=self._run, name="pigeon-abuse-state", daemon=True)
        self._thread.start()
        return self

    def table(self, kind: str) -> StateTable:
        table = self._tables.get(kind)
        if table is None:
            table = self._tables[kind] = StateTable(self, kind, self.max_entries)
        return table

    def changed(self, kind: str, key: str, values: Values | None) -> None:
        """An entry changed (None: deleted); written at the next flush."""
        if self.path is None:
            return
        with self._lock:
            self._dirty[(kind, key)] = values

    def evicted(self, kind: str, key: str) -> None:
        """Dropped from memory past `max_entries`: from the file too. (A shared
        store, pigeon/policy/sharedstate.py, keeps the row other nodes may use.)"""
        self.changed(kind, key, None)

    def flush(self) -> None:
        """Write every change now, in one transaction (module contract)."""
        with self._write_lock:
            with self._lock:
                dirty, self._dirty = self._dirty, {}
            if not dirty or self._db is None:
                return
            puts = [(k, key, *v) for (k, key), v in dirty.items() if v is not None]
            gone = [(k, key) for (k, key), v in dirty.items() if v is None]
            try:
                with self._db:
                    self._db.executemany("DELETE FROM state WHERE kind = ? AND key = ?", gone)
                    self._db.executemany(
                        "INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?, ?)", puts
                    )
            except sqlite3.Error as exc:
                log.warning("could not write %s: %s (kept in memory)", self.path, exc)
                with self._lock:  # try again next time; newer changes win
                    self._dirty = {**dirty, **self._dirty}

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
        with self._write_lock:  # no flush is inside the connection while it closes
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- internals -------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval)
            if not self._closed:
                self.flush()

    def _connect(self) -> list[tuple[str, str, float, float, float]]:
        assert self.path is not None
        ensure_file(self.path, 0o600)  # docs/security.md, "Files and their modes"
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {version}, not {SCHEMA_VERSION}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # a cache: no fsync per batch
            db.execute(_SCHEMA)
            if version == 0:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            rows = db.execute("SELECT kind, key, a, b, c FROM state").fetchall()
        except sqlite3.Error:
            db.close()
            raise
        db.isolation_level = "DEFERRED"
        self._db = db
        return rows

    def _discard(self) -> None:
        assert self.path is not None
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(f"{self.path}{suffix}")
            except FileNotFoundError:
                pass
