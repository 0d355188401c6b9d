"""The queue manager's and the operators' side of the PostgreSQL store.

Contract:
  * `ManagerSide` (mixed into PgQueueStore, pigeon/store/pg/store.py) is
    `QueueStateStore` and `QueueQueries` of pigeon/queue/api.py over the
    shared tables of migrations/0001_queue.sql; each call is one statement
    or one transaction on a pooled connection, committed before it returns.
    A call of ONE statement runs it alone on the autocommit connection (a
    statement is its own transaction: atomic, and durable at its COMMIT
    like any other), saving the BEGIN and COMMIT round trips each delivery
    would otherwise wait for (docs/benchmarks.md, "Cluster on PostgreSQL").
  * Claims with leases (issue 17): moving to 'active' (`claim`, `move`)
    records the claiming node and `lease_until` = now + `lease` seconds,
    and takes rows with `FOR UPDATE SKIP LOCKED` and the state test
    re-checked on the row's newest version: two nodes claiming at once
    never both get an entry, neither waits for the other, and an entry an
    operator held or deleted meanwhile is not taken. Leaving 'active'
    clears the claim.
  * `recover()` releases this node's claims and every claim whose lease
    has expired (its node died): they become 'incoming', due at once.
    Claims of other live nodes are left alone. Idempotent.
  * `claim_due(now, limit)` (PostgreSQL only, for several nodes): `due()`
    and `claim()` in one transaction, rows locked FOR UPDATE SKIP LOCKED.
  * Leases kept (the queue manager's qmgr/leases.py, every lease/3):
    `renew_leases(ids)` extends this node's claims on `ids` to now + lease
    in ONE UPDATE and returns the ids still ours (an id missing was taken
    over: its lease expired and some node released it, or it left
    'active'); `release_expired(now)` makes every claim whose lease has
    expired 'incoming' again, due at once (recover()'s second half, any
    node's); `own_active()` lists the entries this node has claimed, for
    the manager's sweep (qmgr/settle.py), which must never requeue
    another live node's deliveries.
  * `due()` is the embedded store's rule (pigeon/queue/state.py,
    `fair_due`): half the slots to each of 'incoming' and 'deferred',
    interleaved, oldest first, read from the pigeon_queue_due index.
  * `load()` of an unreadable envelope or of an entry whose content rows are
    missing moves it to 'corrupt' (one log line) and raises CorruptEntry;
    a missing entry is a plain StoreError. An unknown state is ValueError.
  * Every psycopg error leaves as a StoreError (db.store_error).
"""

from __future__ import annotations

import builtins
import json
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from pigeon.queue.api import QueueEntry, RecoveryReport
from pigeon.queue.model import DAMAGED_ENVELOPE, Envelope
from pigeon.queue.state import fair_due
from pigeon.store.pg.db import Pool
from pigeon.store.pg.recent import RecentContent
from pigeon.vocab.errors import CorruptEntry, StoreError
from pigeon.vocab.states import STATES, QueueState

__all__ = ["DEFAULT_LEASE", "ManagerSide"]

log = logging.getLogger("pigeon.queue")

#: How long a claim holds without its node renewing it (seconds): past it,
#: another node may take the entry. `[queue] lease` (config/schema.py) sets
#: it for `pigeon serve`; a running manager renews its claims every lease/3.
DEFAULT_LEASE = 60.0

_DUE = (
    "SELECT queue_id FROM pigeon_queue WHERE state = %s AND next_attempt <= %s "
    "ORDER BY next_attempt, queue_id LIMIT %s"
)
_CLAIM = (
    "UPDATE pigeon_queue q SET state = 'active', node = %s, lease_until = %s{extra} "
    "FROM (SELECT queue_id FROM pigeon_queue WHERE queue_id = ANY(%s) AND state = ANY(%s) "
    "FOR UPDATE SKIP LOCKED) c WHERE q.queue_id = c.queue_id RETURNING q.queue_id"
)
_MOVE = (
    "UPDATE pigeon_queue SET state = %s, node = NULL, lease_until = NULL{extra} "
    "WHERE queue_id = ANY(%s) AND state = ANY(%s) RETURNING queue_id"
)
_RELEASE = (
    "UPDATE pigeon_queue SET state = 'incoming', next_attempt = %s, node = NULL, "
    "lease_until = NULL WHERE state = 'active' AND (node = %s OR lease_until < %s) "
    "RETURNING queue_id"
)
_RENEW = (
    "UPDATE pigeon_queue SET lease_until = %s WHERE queue_id = ANY(%s) AND state = 'active' "
    "AND node = %s RETURNING queue_id"
)
_EXPIRED = (
    "UPDATE pigeon_queue SET state = 'incoming', next_attempt = %s, node = NULL, "
    "lease_until = NULL WHERE state = 'active' AND lease_until < %s RETURNING queue_id"
)
#: claim_due(): one state's due entries, locked; rows another node is claiming
#: at that moment are skipped, not waited for.
_LOCK_DUE = _DUE + " FOR UPDATE SKIP LOCKED"
_ENTRY = "SELECT queue_id, state, next_attempt, envelope FROM pigeon_queue"


def _names(states: Iterable[QueueState]) -> list[str]:
    out = list(states)
    for s in out:
        if s not in STATES:
            raise ValueError(f"unknown queue state {s!r}")
    return [str(s) for s in out]


def _in_order(wanted: Sequence[str], got: Iterable[Any]) -> list[str]:
    done = {row[0] for row in got}
    out: list[str] = []
    for qid in wanted:
        if qid in done and qid not in out:
            out.append(qid)
    return out


def _envelope_or_none(raw: str) -> Envelope | None:
    try:
        return Envelope.from_dict(json.loads(raw))
    except DAMAGED_ENVELOPE:
        return None


class ManagerSide:
    _pool: Pool
    _node: str
    _recent: RecentContent
    lease: float

    @property
    def node(self) -> str:
        return self._node

    def recover(self) -> RecoveryReport:
        now = time.time()
        with self._pool.conn("queue recover") as conn:
            with conn.transaction():
                rows = conn.execute(_RELEASE, (now, self._node, now)).fetchall()
            queued = conn.execute("SELECT count(*) FROM pigeon_queue").fetchone()[0]
        return RecoveryReport(reactivated=sorted(r[0] for r in rows), queued=int(queued))

    def due(self, now: float, limit: int = 100) -> builtins.list[str]:
        if limit <= 0:
            return []
        with self._pool.conn("queue due") as conn:
            inc = [r[0] for r in conn.execute(_DUE, ("incoming", now, limit))]
            dfr = [r[0] for r in conn.execute(_DUE, ("deferred", now, limit))]
        return fair_due(limit, inc, dfr)

    def claim_due(self, now: float, limit: int = 100) -> builtins.list[tuple[str, QueueState]]:
        """`due()` and `claim()` in one transaction, for several nodes: up to
        `limit` due entries claimed by this node, each with the state it was
        in (new mail or a retry), chosen as `due()` chooses. Rows another
        node is claiming at that moment are skipped (SKIP LOCKED), so nodes
        asking at once get disjoint work and never wait for each other;
        rows locked here but not chosen are free again at the COMMIT."""
        if limit <= 0:
            return []
        with self._pool.conn("queue claim") as conn:
            with conn.transaction():
                inc = [r[0] for r in conn.execute(_LOCK_DUE, ("incoming", now, limit))]
                dfr = [r[0] for r in conn.execute(_LOCK_DUE, ("deferred", now, limit))]
                chosen = fair_due(limit, inc, dfr)
                conn.execute(
                    "UPDATE pigeon_queue SET state = 'active', node = %s, lease_until = %s "
                    "WHERE queue_id = ANY(%s)",
                    (self._node, time.time() + self.lease, chosen),
                )
        was = set(inc)
        return [(q, QueueState.INCOMING if q in was else QueueState.DEFERRED) for q in chosen]

    def renew_leases(self, queue_ids: Sequence[str]) -> builtins.list[str]:
        """This node's claims on `queue_ids` last `lease` seconds more; the
        ids still ours, in their order (module contract)."""
        if not queue_ids:
            return []
        with self._pool.conn("queue lease renewal") as conn:
            rows = conn.execute(
                _RENEW, (time.time() + self.lease, list(queue_ids), self._node)
            ).fetchall()
        return _in_order(queue_ids, rows)

    def release_expired(self, now: float) -> builtins.list[str]:
        """Every claim whose lease ended before `now` becomes 'incoming', due at
        `now`: a dead node's work, for the live nodes to take (module contract)."""
        with self._pool.conn("queue lease expiry") as conn:
            rows = conn.execute(_EXPIRED, (now, now)).fetchall()
        return sorted(r[0] for r in rows)

    def own_active(self) -> builtins.list[str]:
        """The 'active' entries this node has claimed (module contract)."""
        with self._pool.conn("queue own claims") as conn:
            rows = conn.execute(
                "SELECT queue_id FROM pigeon_queue WHERE state = 'active' AND node = %s "
                "ORDER BY queue_id",
                (self._node,),
            ).fetchall()
        return [r[0] for r in rows]

    def next_retry(self) -> float | None:
        with self._pool.conn("queue next retry") as conn:
            row = conn.execute(
                "SELECT min(next_attempt) FROM pigeon_queue WHERE state = 'deferred'"
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def claim(
        self,
        queue_ids: Sequence[str],
        from_states: Iterable[QueueState] = (QueueState.INCOMING,),
    ) -> builtins.list[str]:
        return self.move(queue_ids, QueueState.ACTIVE, from_states=from_states)

    def move(
        self,
        queue_ids: Sequence[str],
        state: QueueState,
        next_attempt: float | None = None,
        *,
        from_states: Iterable[QueueState],
    ) -> builtins.list[str]:
        (target,) = _names((state,))
        sources = _names(from_states)
        if not queue_ids or not sources:
            return []
        extra = "" if next_attempt is None else ", next_attempt = %s"
        tail: tuple[Any, ...] = () if next_attempt is None else (next_attempt,)
        ids = list(queue_ids)
        with self._pool.conn("queue claim" if target == "active" else "queue move") as conn:
            if target == "active":  # one statement each: its own transaction
                lease = time.time() + self.lease
                sql = _CLAIM.format(extra=extra)
                rows = conn.execute(sql, (self._node, lease, *tail, ids, sources)).fetchall()
            else:
                sql = _MOVE.format(extra=extra)
                rows = conn.execute(sql, (target, *tail, ids, sources)).fetchall()
        return _in_order(queue_ids, rows)

    def load(self, queue_id: str) -> Envelope:
        with self._pool.conn("queue load") as conn:
            row = conn.execute(
                "SELECT envelope, size > 0 AND NOT EXISTS (SELECT 1 FROM pigeon_content c "
                "WHERE c.queue_id = q.queue_id AND c.seq = 0) FROM pigeon_queue q "
                "WHERE queue_id = %s",
                (queue_id,),
            ).fetchone()
        if row is None:
            raise StoreError(f"no such queue entry: {queue_id}")
        raw, missing = row
        try:
            env = Envelope.from_dict(json.loads(raw))
        except DAMAGED_ENVELOPE as e:
            self.quarantine(queue_id, f"unreadable envelope: {e!r}")
            raise CorruptEntry(f"{queue_id}: unreadable envelope") from e
        if missing:
            self.quarantine(queue_id, "content missing")
            raise CorruptEntry(f"{queue_id}: content missing")
        return env

    def update(self, envelope: Envelope, state: QueueState, next_attempt: float) -> None:
        (name,) = _names((state,))
        data = json.dumps(envelope.to_dict(), separators=(",", ":"))
        with self._pool.conn("queue update") as conn:
            conn.execute(
                "UPDATE pigeon_queue SET envelope = %s, state = %s, next_attempt = %s, "
                "node = CASE WHEN %s = 'active' THEN node END, "
                "lease_until = CASE WHEN %s = 'active' THEN lease_until END "
                "WHERE queue_id = %s",
                (data, name, next_attempt, name, name, envelope.queue_id),
            )

    def remove_many(self, queue_ids: Sequence[str]) -> None:
        if not queue_ids:
            return
        with self._pool.conn("queue remove") as conn:
            # One statement, one transaction: the content rows go with the
            # entries (ON DELETE CASCADE).
            conn.execute("DELETE FROM pigeon_queue WHERE queue_id = ANY(%s)", (list(queue_ids),))
        self._recent.drop(queue_ids)

    def quarantine(self, queue_id: str, reason: str) -> None:
        """Move the entry to 'corrupt' with one log line; its content stays."""
        log.error("queue_id=%s: %s; moved to corrupt", queue_id, reason)
        with self._pool.conn("queue update") as conn:
            with conn.transaction():
                conn.execute(
                    "UPDATE pigeon_queue SET state = 'corrupt', node = NULL, lease_until = NULL "
                    "WHERE queue_id = %s",
                    (queue_id,),
                )

    # --- QueueQueries ---------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self._pool.conn("queue counts") as conn:
            rows = conn.execute("SELECT state, count(*) FROM pigeon_queue GROUP BY state")
            found = {str(s): int(n) for s, n in rows}
        return {s.value: found.get(s.value, 0) for s in STATES}

    def list(self, state: QueueState | None = None) -> builtins.list[QueueEntry]:
        with self._pool.conn("queue list") as conn:
            if state is None:
                rows = conn.execute(_ENTRY + " ORDER BY queue_id").fetchall()
            else:
                (name,) = _names((state,))
                rows = conn.execute(
                    _ENTRY + " WHERE state = %s ORDER BY queue_id", (name,)
                ).fetchall()
        return [QueueEntry(q, QueueState(s), float(t), _envelope_or_none(e)) for q, s, t, e in rows]

    def entry(self, queue_id: str) -> QueueEntry | None:
        with self._pool.conn("queue entry") as conn:
            row = conn.execute(_ENTRY + " WHERE queue_id = %s", (queue_id,)).fetchone()
        if row is None:
            return None
        q, s, t, e = row
        return QueueEntry(q, QueueState(s), float(t), _envelope_or_none(e))

    def states(self, queue_ids: Sequence[str]) -> dict[str, QueueState]:
        if not queue_ids:
            return {}
        with self._pool.conn("queue states") as conn:
            rows = conn.execute(
                "SELECT queue_id, state FROM pigeon_queue WHERE queue_id = ANY(%s)",
                (list(queue_ids),),
            ).fetchall()
        found = {q: QueueState(s) for q, s in rows}
        return {q: found[q] for q in queue_ids if q in found}
