"""queue.db's tables, its store id and its format version (docs/upgrade.md, "Formats").

Contract:
  * `QUEUE` is the queue's format (pigeon/dataformat.py): queue.db's tables
    and the content files it governs, whose preamble has its own version
    (pigeon/msgfile.py, v1, or none in files older than the preamble). A
    release that changes either in a way an older pigeon would misread
    (a table, a column, an envelope field that must not be dropped, a
    preamble version) bumps `QUEUE.current` and adds a `Migration` to
    `STEPS`, so older pigeons refuse the queue instead.
      format 0   release 0.1.0: tables queue, meta (store_id), claims; no
                 version recorded
      format 1   release 0.2.0: the same tables; user_version 1 and meta
                 `format`, `written_by`
  * `ensure(conn, path, owner=...)` runs inside the caller's transaction
    (dbfile.prepare opens it) and returns a `DbState`:
      - a newer format is refused first (`QueueFormatError`, a StoreError
        naming the file and both versions), before anything is written;
      - the schema and the store id: `created` when there was no queue
        table (missing, 0-byte or foreign file: a NEW store id, so files
        already in msg/ are rebuilt, queue/recovery.py); `store_id_added`
        when a queue table had no store id (the version before the store
        id); a new database is stamped with the current format;
      - an older format: the owner upgrades it (`upgraded_from`: the version
        found; the caller logs `QUEUE.upgraded_line` once committed);
        anyone else uses it as it is when `QUEUE.oldest_readable` allows.
    The check-and-create is one transaction, so processes opening the same
    new database at once agree on one store id, and an upgrade cut short
    by a crash leaves the older format, which opens and is upgraded again.
  * The `claims` table (queue/state.py, "Claims") is created when missing;
    it needs no migration: an 'active' row without a claim belongs to the
    home node.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from pigeon.dataformat import (
    Format,
    FormatError,
    Migration,
    migrate_sqlite,
    read_sqlite,
    stamp_sqlite,
)
from pigeon.msgfile import new_store_id
from pigeon.vocab.errors import StoreError

__all__ = ["DbState", "QUEUE", "QueueFormatError", "STEPS", "ensure"]

QUEUE = Format("queue", "queue database", current=1, oldest_readable=0)

TABLES = (
    """CREATE TABLE IF NOT EXISTS queue (
        queue_id     TEXT PRIMARY KEY,
        state        TEXT NOT NULL,
        next_attempt REAL NOT NULL,
        envelope     TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS queue_due ON queue (state, next_attempt)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # Claims of nodes other than the home node (queue/state.py, "Claims").
    "CREATE TABLE IF NOT EXISTS claims (queue_id TEXT PRIMARY KEY, node TEXT NOT NULL)",
)


def _nothing(conn: sqlite3.Connection) -> None:
    """Format 1 has the tables of format 0: only the version is new (stamped
    by dataformat.migrate_sqlite, removed again by its downgrade)."""


#: Step v -> v + 1 under key v (dataformat.Migration).
STEPS: dict[int, Migration] = {0: Migration(up=_nothing, down=_nothing)}


class QueueFormatError(FormatError, StoreError):
    """queue.db is of a format this pigeon must not use (one line, see dataformat)."""


@dataclass(frozen=True, slots=True)
class DbState:
    """What `ensure` found and did (see the contract)."""

    store_id: str
    created: bool = False  # no schema was there: missing, empty or foreign file
    store_id_added: bool = False  # rows older than the store id, which was just added
    upgraded_from: int | None = None  # the owner upgraded the format from this version


def ensure(conn: sqlite3.Connection, path: Path, *, owner: bool) -> DbState:
    """See the contract; runs inside the caller's transaction."""
    found, written_by = read_sqlite(conn)
    try:
        decision = QUEUE.decide(found, owner=owner, path=path, written_by=written_by)
    except FormatError as exc:
        raise QueueFormatError(str(exc)) from None
    state = _schema_and_id(conn)
    if state.created:
        stamp_sqlite(conn, QUEUE.current)
        return state
    if decision == "upgrade":
        migrate_sqlite(conn, STEPS, found, QUEUE.current)
        return DbState(state.store_id, store_id_added=state.store_id_added, upgraded_from=found)
    return state


def _schema_and_id(conn: sqlite3.Connection) -> DbState:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    for statement in TABLES:
        conn.execute(statement)
    if "queue" not in tables:
        # A new queue: whatever store id a leftover meta table held belongs
        # to rows that are gone, so it must not vouch for files any more;
        # nor may leftover claims name entries of the new queue.
        conn.execute("DELETE FROM claims")
        store_id = new_store_id()
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('store_id', ?)", (store_id,))
        return DbState(store_id, created=True)
    row = conn.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()
    if row is not None:
        return DbState(row[0])
    store_id = new_store_id()
    conn.execute("INSERT INTO meta (key, value) VALUES ('store_id', ?)", (store_id,))
    return DbState(store_id, store_id_added=True)
