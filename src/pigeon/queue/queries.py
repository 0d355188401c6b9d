"""Read-only questions about queue.db: counts, listings, one entry, states.

Contract (the `QueueQueries` face of queue/api.py):
  * Operators (`pigeon queue list/show`, the control socket), `pigeon
    status` and the metrics ask these; they never change anything. They
    share the manager's connection and its lock (`dbfile.Db`), so a
    listing waits for a running change instead of reading around it, and
    block: call them from worker threads.
  * `list()` orders by queue ID, i.e. by arrival (IDs sort by time,
    queue/spool.py). An envelope that does not load is shown as None (the
    entry is listed, 'corrupt' or about to be), never raised.
  * Errors are `StoreError` (dbfile.Db converts sqlite3 errors).
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence

from pigeon.queue.api import QueueEntry
from pigeon.queue.dbfile import Db
from pigeon.queue.model import DAMAGED_ENVELOPE, Envelope
from pigeon.vocab.states import STATES, QueueState

__all__ = ["QueueQueriesDb"]

_ENTRY_SQL = "SELECT queue_id, state, next_attempt, envelope FROM queue"


class QueueQueriesDb:
    """Queries over queue.db (see the contract)."""

    def __init__(self, db: Db) -> None:
        self._db = db

    def counts(self) -> dict[str, int]:
        rows = self._db.query("queue counts", "SELECT state, COUNT(*) FROM queue GROUP BY state")
        out = {state.value: 0 for state in STATES}
        out.update(rows)
        return out

    def list(self, state: QueueState | None = None) -> builtins.list[QueueEntry]:
        if state is None:
            rows = self._db.query("queue list", _ENTRY_SQL + " ORDER BY queue_id")
        else:
            rows = self._db.query(
                "queue list", _ENTRY_SQL + " WHERE state=? ORDER BY queue_id", (state,)
            )
        return [_entry(*row) for row in rows]

    def entry(self, queue_id: str) -> QueueEntry | None:
        rows = self._db.query("queue entry", _ENTRY_SQL + " WHERE queue_id=?", (queue_id,))
        return _entry(*rows[0]) if rows else None

    def states(self, queue_ids: Sequence[str]) -> dict[str, QueueState]:
        out: dict[str, QueueState] = {}
        for qid in queue_ids:
            rows = self._db.query(
                "queue states", "SELECT state FROM queue WHERE queue_id=?", (qid,)
            )
            if rows:
                out[qid] = QueueState(rows[0][0])
        return out


def _entry(queue_id: str, state: str, next_attempt: float, raw: str) -> QueueEntry:
    return QueueEntry(queue_id, QueueState(state), next_attempt, _envelope_or_none(raw))


def _envelope_or_none(raw: str) -> Envelope | None:
    try:
        return Envelope.from_dict(json.loads(raw))
    except DAMAGED_ENVELOPE:
        return None
