"""Where report records wait for the next report: `<data_dir>/reports.db`, and the sink.

Contract:
  * `StoreSink(path)` is the `ReportSink` of a server with reports on. Its
    `dmarc(record)` and `tls(record)` only append to a list in memory (a
    lock, no I/O: the event loop never waits for the disk); one writer
    thread, started with the first record, writes what is pending every
    `flush_interval` seconds in one SQLite transaction. `flush()` writes
    now (the report job, before it reads; tests); `close()` writes what is
    left and stops the thread. A record of a kind that is off (`dmarc` /
    `tls` false) is dropped at once.
  * Best effort, said plainly: a crash loses the records of the last
    `flush_interval`; past `max_pending` records waiting (the disk stalled)
    new ones are dropped and counted in one warning per flush; a database
    that cannot be written is logged and its batch dropped. Reports are
    statistics about mail, never mail: nothing accepted depends on them,
    and the sink never raises into its caller.
  * `ReportStore(path)` is the file: `append(kind, records)`,
    `due(kind, before, after=, limit=)` -> [(row id, record)] received
    before `before`, in the order stored, a page at a time,
    `delete(ids)`, `delete_through(kind, before, last id)`. Blocking: the report job calls it in a
    thread. The file is created mode 0600; its schema version is in
    `PRAGMA user_version`; a damaged file or one of an unknown version is
    logged and started afresh (like `abuse.db`: a cache, docs/upgrade.md).
    Worker processes (`workers` > 1) each have their own sink over the same
    file; SQLite serialises the writers (WAL, busy timeout).
  * Records are stored as JSON of their fields (`encode`/`decode`); a row
    that no longer decodes is skipped, logged, and deleted with the batch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pigeon.fsutil import ensure_file
from pigeon.reports.records import (
    DkimAuth,
    DmarcPublished,
    DmarcRecord,
    SpfAuth,
    TlsRecord,
)

__all__ = ["FILE_NAME", "Kind", "ReportStore", "StoreSink", "decode", "encode"]

log = logging.getLogger("pigeon.reports")

FILE_NAME = "reports.db"
SCHEMA_VERSION = 1
FLUSH_INTERVAL = 1.0
MAX_PENDING = 100_000

Kind = Literal["dmarc", "tls"]
Record = DmarcRecord | TlsRecord

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, "
    "at REAL NOT NULL, data TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS records_due ON records (kind, at)",
)


def encode(record: Record) -> str:
    return json.dumps(dataclasses.asdict(record), separators=(",", ":"))


def decode(kind: str, text: str) -> Record:
    """The record of `kind` stored as `text`; ValueError/TypeError/KeyError when it is not one."""
    data: dict[str, Any] = json.loads(text)
    if kind == "dmarc":
        data["published"] = DmarcPublished(**data["published"])
        data["dkim"] = tuple(DkimAuth(**d) for d in data["dkim"])
        data["spf"] = tuple(SpfAuth(**s) for s in data["spf"])
        return DmarcRecord(**data)
    if kind == "tls":
        data["policy_strings"] = tuple(data["policy_strings"])
        return TlsRecord(**data)
    raise ValueError(f"unknown kind {kind!r}")


class ReportStore:
    """`<data_dir>/reports.db` (module contract). Blocking; one connection per instance."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> ReportStore:
        return cls(Path(data_dir) / FILE_NAME)

    def append(self, kind: Kind, records: Iterable[Record]) -> None:
        rows = [(kind, r.when, encode(r)) for r in records]
        with self._lock:
            db = self._open()
            with db:
                db.executemany("INSERT INTO records (kind, at, data) VALUES (?, ?, ?)", rows)

    def due(
        self, kind: Kind, before: float, *, after: int = 0, limit: int = -1
    ) -> list[tuple[int, Record | None]]:
        """Records of `kind` received before `before`, in the order they were stored,
        those with a row id above `after`, at most `limit` (-1: all; pages keep the
        memory bounded); None for a row that does not decode (logged; it is deleted
        with the others)."""
        with self._lock:
            rows = (
                self._open()
                .execute(
                    "SELECT id, data FROM records WHERE kind = ? AND at < ? AND id > ? "
                    "ORDER BY id LIMIT ?",
                    (kind, before, after, limit),
                )
                .fetchall()
            )
        out: list[tuple[int, Record | None]] = []
        for row_id, text in rows:
            try:
                out.append((row_id, decode(kind, text)))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("%s: %s record %d skipped: %s", self.path, kind, row_id, exc)
                out.append((row_id, None))
        return out

    def delete(self, ids: Iterable[int]) -> None:
        with self._lock:
            db = self._open()
            with db:
                db.executemany("DELETE FROM records WHERE id = ?", [(i,) for i in ids])

    def delete_through(self, kind: Kind, before: float, last: int) -> None:
        """Delete what `due(kind, before)` gave up to row id `last` (not what was stored since)."""
        with self._lock:
            db = self._open()
            with db:
                db.execute(
                    "DELETE FROM records WHERE kind = ? AND at < ? AND id <= ?",
                    (kind, before, last),
                )

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self._db = self._connect()
            except sqlite3.OperationalError:
                raise  # locked, no permission: not the file's fault; the caller logs it
            except sqlite3.DatabaseError as exc:  # damaged, or a schema we do not know
                log.warning("%s could not be read (%s): starting it afresh", self.path, exc)
                for suffix in ("", "-wal", "-shm", "-journal"):
                    try:
                        os.unlink(f"{self.path}{suffix}")
                    except FileNotFoundError:
                        pass
                self._db = self._connect()
        return self._db

    def _connect(self) -> sqlite3.Connection:
        ensure_file(self.path, 0o600)  # docs/security.md, "Files and their modes"
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {version}, not {SCHEMA_VERSION}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # best effort: no fsync per batch
            for statement in _SCHEMA:
                db.execute(statement)
            if version == 0:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error:
            db.close()
            raise
        db.isolation_level = "DEFERRED"
        return db


class StoreSink:
    """The `ReportSink` over a `ReportStore`, written behind (module contract)."""

    def __init__(
        self,
        path: Path,
        *,
        dmarc: bool = True,
        tls: bool = True,
        flush_interval: float = FLUSH_INTERVAL,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.store = ReportStore(path)
        self.kinds: frozenset[str] = frozenset(
            k for k, on in (("dmarc", dmarc), ("tls", tls)) if on
        )
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self._pending: list[tuple[Kind, Record]] = []
        self._dropped = 0
        self._lock = threading.Lock()  # guards _pending, _dropped, _thread
        self._write_lock = threading.Lock()  # one flush at a time
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def dmarc(self, record: DmarcRecord) -> None:
        self._put("dmarc", record)

    def tls(self, record: TlsRecord) -> None:
        self._put("tls", record)

    def _put(self, kind: Kind, record: Record) -> None:
        if kind not in self.kinds or self._closed:
            return
        with self._lock:
            if len(self._pending) >= self.max_pending:
                self._dropped += 1
                return
            self._pending.append((kind, record))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pigeon-report-sink", daemon=True
                )
                self._thread.start()

    def flush(self) -> None:
        """Write every pending record now (module contract); never raises."""
        with self._write_lock:
            with self._lock:
                pending, self._pending = self._pending, []
                dropped, self._dropped = self._dropped, 0
            if dropped:
                log.warning("%d report record(s) dropped: too many waiting to be written", dropped)
            if not pending:
                return
            try:
                kinds: tuple[Kind, ...] = ("dmarc", "tls")
                for kind in kinds:
                    batch = [r for k, r in pending if k == kind]
                    if batch:
                        self.store.append(kind, batch)
            except (sqlite3.Error, OSError) as exc:
                log.warning(
                    "%d report record(s) lost: cannot write %s: %s",
                    len(pending),
                    self.store.path,
                    exc,
                )

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout=10)
        self.flush()
        self.store.close()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval)
            if not self._closed:
                self.flush()
