"""The queue manager's writes to queue.db: due entries, claims, state changes, removal.

Contract (the `QueueStateStore` face of queue/api.py, minus recovery,
which is queue/recovery.py):
  * Only the queue manager calls this (CONTRIBUTING.md, rule 8), from
    worker threads: every call blocks on SQLite. All of them share one
    connection (synchronous=NORMAL, see below) under its lock (`dbfile.Db`)
    with the read-only queries of queue/queries.py. Every change is one
    `dbfile.transaction()`; errors are `StoreError`, nothing half-written.
  * Why NORMAL and not FULL: losing the last of the manager's changes to a
    power cut can only make a delivery happen again, never lose a message
    (the Maildir copy, or the new report via the committer, is durable
    before the queue row changes). WAL + NORMAL still survives a process
    crash, and the next FULL commit of new mail syncs these frames too.
  * `due(now, limit)`: Rule 1 (fairness, as Postfix's qmgr): new mail never
    waits behind a deferred backlog. Up to half the slots go to 'incoming',
    half to 'deferred' (`split_slots`); slots one state cannot use go to
    the other; each state oldest-first (next_attempt), the two interleaved.
    Each state is one index range search on queue_due (state,
    next_attempt) reading at most `limit` rows (`DUE_SQL`): O(log n +
    limit) however big the backlog. 'active', 'hold' and 'corrupt' are
    never due.
  * Claims. Rule 2: an entry being delivered is 'active' and claimed by
    one node. `claim()`, and `move()` to 'active', take only entries now
    in one of `from_states`, each test in the UPDATE itself, all in one
    transaction: two claimants never both get an entry, and an entry an
    operator held or deleted meanwhile is not taken. The node is recorded
    in the `claims` table, except for the home node (`HOME_NODE`), which
    every claim of a single-node queue (every SQLite queue: its files are
    local) is made by: an 'active' entry without a claims row is the home
    node's. So one node pays nothing for ownership. A claims row counts
    only while its entry is 'active'; a claim by the home node deletes
    stale rows of its entries (when the table has rows at all), removal
    deletes them, recovery prunes the rest.
  * `load()`: the envelope; an unreadable one, or a missing content file,
    moves the entry to 'corrupt' (one log line) and raises `CorruptEntry`;
    no row: `StoreError`.
  * `update()` writes envelope, state and next attempt; `move()` changes
    the state (and next attempt, when given) of entries in `from_states`
    and returns those that moved; `remove_many()` deletes rows in ONE
    transaction, then the files (queue/store.py Rule 4: a crash in between
    leaves files without rows, which recovery removes). Ids without a row
    are ignored everywhere. An unknown state is ValueError (a bug).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Sequence

from pigeon.queue.dbfile import Db
from pigeon.queue.files import ContentFiles
from pigeon.queue.model import DAMAGED_ENVELOPE, Envelope
from pigeon.vocab.errors import CorruptEntry, StoreError
from pigeon.vocab.states import STATES, QueueState

__all__ = ["HOME_NODE", "QueueStateDb", "DUE_SQL", "NEXT_RETRY_SQL", "fair_due", "split_slots"]

log = logging.getLogger("pigeon.queue")

#: The node of every claim in a single-node queue (see "Claims").
HOME_NODE = "local"

#: The due query for ONE state: an index range search on queue_due with the
#: ORDER BY satisfied by the index (no sort), so it reads at most LIMIT rows.
#: Tests check this with EXPLAIN QUERY PLAN.
DUE_SQL = (
    "SELECT queue_id FROM queue WHERE state=? AND next_attempt<=? ORDER BY next_attempt LIMIT ?"
)
#: The earliest next attempt of one state, from the index in O(log n).
NEXT_RETRY_SQL = "SELECT MIN(next_attempt) FROM queue WHERE state=?"

_ANY_CLAIM_SQL = "SELECT 1 FROM claims LIMIT 1"


def split_slots(free: int, incoming: int, deferred: int) -> tuple[int, int]:
    """How many (incoming, deferred) messages to take with `free` slots (Rule 1).

    `incoming` and `deferred` are how many of each are due (or at least
    `free` when there are more).
    """
    if free < 0 or incoming < 0 or deferred < 0:
        raise ValueError("negative count")
    half_in = (free + 1) // 2  # incoming gets the odd slot
    take_in = min(incoming, max(half_in, free - deferred))
    take_def = min(deferred, free - take_in)
    return take_in, take_def


def fair_due(limit: int, incoming: list[str], deferred: list[str]) -> list[str]:
    """Rule 1 applied: up to `limit` of the due ids of each state (oldest
    first), their slots split by `split_slots`, the two interleaved. Every
    backend's due() ends here (pigeon/store/pg/manager.py too)."""
    n_in, n_def = split_slots(limit, len(incoming), len(deferred))
    inc, dfr = incoming[:n_in], deferred[:n_def]
    out: list[str] = []
    for i in range(max(len(inc), len(dfr))):
        out.extend(inc[i : i + 1])
        out.extend(dfr[i : i + 1])
    return out


_CHECKED: dict[tuple[QueueState, ...], tuple[str, ...]] = {}


def _checked(states: Iterable[QueueState]) -> tuple[str, ...]:
    """The states' names; ValueError for an unknown state (a bug). Each
    combination is checked once: the manager asks with the same few on
    every claim and move."""
    out = tuple(states)
    names = _CHECKED.get(out)
    if names is None:
        if not set(out) <= set(STATES):
            raise ValueError(f"unknown queue state in {out!r}")
        names = tuple(str(s) for s in out)
        if len(_CHECKED) < 64:  # the few combinations pigeon uses; never unbounded
            _CHECKED[out] = names
    return names


class QueueStateDb:
    """The manager's side of queue.db (see the contract)."""

    def __init__(self, db: Db, files: ContentFiles, node: str = HOME_NODE) -> None:
        self._db = db
        self._files = files
        self.node = node

    def due(self, now: float, limit: int = 100) -> list[str]:
        if limit <= 0:
            return []
        query = self._db.query
        inc = [r[0] for r in query("queue due", DUE_SQL, (QueueState.INCOMING, now, limit))]
        dfr = [r[0] for r in query("queue due", DUE_SQL, (QueueState.DEFERRED, now, limit))]
        return fair_due(limit, inc, dfr)

    def next_retry(self) -> float | None:
        rows = self._db.query("queue next retry", NEXT_RETRY_SQL, (QueueState.DEFERRED,))
        value = rows[0][0]
        return None if value is None else float(value)

    def claim(
        self, queue_ids: Sequence[str], from_states: Iterable[QueueState] = (QueueState.INCOMING,)
    ) -> list[str]:
        return self.move(queue_ids, QueueState.ACTIVE, from_states=from_states)

    def load(self, queue_id: str) -> Envelope:
        rows = self._db.query(
            "queue load", "SELECT envelope FROM queue WHERE queue_id=?", (queue_id,)
        )
        if not rows:
            raise StoreError(f"no such queue entry: {queue_id}")
        try:
            env = Envelope.from_dict(json.loads(rows[0][0]))
        except DAMAGED_ENVELOPE as e:
            self.quarantine(queue_id, f"unreadable envelope: {e!r}")
            raise CorruptEntry(f"{queue_id}: unreadable envelope") from e
        if not self._files.exists(queue_id):
            self.quarantine(queue_id, "content file missing")
            raise CorruptEntry(f"{queue_id}: content file missing")
        return env

    def update(self, envelope: Envelope, state: QueueState, next_attempt: float) -> None:
        (state_name,) = _checked((state,))
        data = json.dumps(envelope.to_dict(), separators=(",", ":"))
        with self._db.transaction("queue update") as conn:
            conn.execute(
                "UPDATE queue SET envelope=?, state=?, next_attempt=? WHERE queue_id=?",
                (data, state_name, next_attempt, envelope.queue_id),
            )

    def move(
        self,
        queue_ids: Sequence[str],
        state: QueueState,
        next_attempt: float | None = None,
        *,
        from_states: Iterable[QueueState],
    ) -> list[str]:
        (target,) = _checked((state,))
        sources = _checked(from_states)
        marks = ",".join("?" * len(sources))
        if next_attempt is None:
            sql = f"UPDATE queue SET state=? WHERE queue_id=? AND state IN ({marks})"
            head: tuple[object, ...] = (target,)
        else:
            sql = (
                f"UPDATE queue SET state=?, next_attempt=? WHERE queue_id=? AND state IN ({marks})"
            )
            head = (target, next_attempt)
        moved: list[str] = []
        what = "queue claim" if target == QueueState.ACTIVE else "queue move"
        with self._db.transaction(what) as conn:
            for qid in queue_ids:
                if conn.execute(sql, (*head, qid, *sources)).rowcount:
                    moved.append(qid)
            if moved and target == QueueState.ACTIVE:
                self._record_claims(conn, moved)
        return moved

    def _record_claims(self, conn: sqlite3.Connection, queue_ids: list[str]) -> None:
        """Rule 2: who claimed `queue_ids` (nothing to write for the home node)."""
        if self.node != HOME_NODE:
            conn.executemany(
                "INSERT OR REPLACE INTO claims (queue_id, node) VALUES (?, ?)",
                [(q, self.node) for q in queue_ids],
            )
        elif conn.execute(_ANY_CLAIM_SQL).fetchone() is not None:
            conn.executemany("DELETE FROM claims WHERE queue_id=?", [(q,) for q in queue_ids])

    def remove_many(self, queue_ids: Sequence[str]) -> None:
        if not queue_ids:
            return
        rows = [(q,) for q in queue_ids]
        with self._db.transaction("queue remove") as conn:
            conn.executemany("DELETE FROM queue WHERE queue_id=?", rows)
            if conn.execute(_ANY_CLAIM_SQL).fetchone() is not None:
                conn.executemany("DELETE FROM claims WHERE queue_id=?", rows)
        for qid in queue_ids:
            self._files.unlink(qid)

    def quarantine(self, queue_id: str, reason: str) -> None:
        """Move the entry to 'corrupt' with one log line; its content stays."""
        log.error("queue_id=%s: %s; moved to corrupt", queue_id, reason)
        with self._db.transaction("queue update") as conn:
            conn.execute(
                "UPDATE queue SET state=? WHERE queue_id=?", (QueueState.CORRUPT, queue_id)
            )
