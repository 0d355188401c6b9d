"""Cluster-wide delivery slots per destination: PostgreSQL advisory locks.

Contract:
  * `PgDestinationSlots(connect)` is the cluster half of the queue
    manager's per-destination concurrency limit (qmgr/clusterlimit.py;
    the node's own limit, qmgr/destinations.py, still holds too): every
    node sharing the database counts against the same `limit` slots of a
    destination, so `[delivery] destination_concurrency` holds across the
    cluster (issue 17).
  * A slot is a PostgreSQL session-level advisory lock on the two keys
    (hash of the destination, slot number 0..limit-1), taken with
    `pg_try_advisory_lock` (never waits) on ONE dedicated connection per
    node and released with `pg_advisory_unlock`. Advisory locks are
    re-entrant within a session, so the node remembers the slots it holds
    and asks only for the others (the statement tests "not mine" before
    it locks: a second lock of our own slot would outlive its one unlock).
    Session locks are held by
    the connection, not by a transaction: a node that dies (SIGKILL, its
    machine gone) loses its connection and PostgreSQL releases its slots
    at once, so a dead node never keeps a destination's slots.
    The two-key form has a key space of its own (PostgreSQL manual,
    "Advisory Locks"): it never meets `pigeon db migrate`'s one-key lock.
  * `try_acquire(destination, limit)` returns a `Slot`, or None when all
    `limit` slots are taken (by any node); one statement: the first free
    slot is locked, no other (the Limit node stops the scan at the first
    row whose lock was granted). `release(slot)` gives it back;
    `is_held(slot)` says, without a database call, whether it is still
    held (its connection has not been dropped since). Two
    destinations whose 32-bit hashes collide share their slots: a stricter
    limit for both, never a looser one.
  * Thread-safe (one lock around the connection; each call is one quick
    statement). A database error raises StoreError and drops the
    connection: the server then released every slot it held, and a later
    `release()` of a slot taken on it does nothing (it is no longer held).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pigeon.store.pg.db import store_error

__all__ = ["PgDestinationSlots", "Slot", "destination_key"]

# The CASE fixes the order of the two tests: PostgreSQL orders a filter's
# ANDed conditions by their estimated cost, and the generic plan of this
# statement once psycopg has prepared it (its fifth run) put the cheap lock
# call first, taking a slot we hold a second time (re-entrant) that the one
# unlock then left held for good: every other node waited for it forever.
# A CASE evaluates its branches in order (PostgreSQL manual, "Expression
# Evaluation Rules").
_TRY = (
    "SELECT s FROM generate_series(0, %s - 1) AS s "
    "WHERE CASE WHEN s = ANY(%s::int4[]) THEN false "
    "ELSE pg_try_advisory_lock(%s::int4, s::int4) END LIMIT 1"
)
_UNLOCK = "SELECT pg_advisory_unlock(%s::int4, %s::int4)"


def destination_key(destination: str) -> int:
    """A stable signed 32-bit key for `destination` (the same on every node)."""
    digest = hashlib.blake2b(destination.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True, slots=True)
class Slot:
    key: int
    number: int
    session: int  # which connection holds it (see release())


class PgDestinationSlots:
    """Advisory-lock slots on one dedicated connection (see the contract)."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._conn: Any = None
        self._session = 0  # bumped whenever a connection is dropped
        self._lock = threading.Lock()
        #: The slots this node holds, by key: advisory locks are re-entrant
        #: within a session, so our own must be skipped, not asked for again.
        self._held: dict[int, set[int]] = {}

    def try_acquire(self, destination: str, limit: int) -> Slot | None:
        key = destination_key(destination)
        with self._lock:
            mine = self._held.setdefault(key, set())
            row = self._execute("destination slot", _TRY, (limit, sorted(mine), key))
            if row is None:
                if not mine:
                    del self._held[key]
                return None
            mine.add(int(row[0]))
            return Slot(key, int(row[0]), self._session)

    def is_held(self, slot: Slot) -> bool:
        """Whether `slot` is still held: taken on the connection still open.

        Called on the event loop (qmgr/clusterlimit.py), so it does not take
        `_lock`, which a worker thread holds across a database call (up to
        the connect timeout while the server is away). Two reads of plain
        attributes: at worst the answer is a moment old, as it would be
        anyway once the lock is let go."""
        return slot.session == self._session and self._conn is not None

    def release(self, slot: Slot) -> None:
        with self._lock:
            if slot.session != self._session or self._conn is None:
                return  # its connection is gone: PostgreSQL released it then
            mine = self._held.get(slot.key, set())
            mine.discard(slot.number)
            if not mine:
                self._held.pop(slot.key, None)
            self._execute("destination slot release", _UNLOCK, (slot.key, slot.number))

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _execute(self, what: str, sql: str, params: tuple[Any, ...]) -> Any:
        import psycopg

        try:
            if self._conn is None:
                self._conn = self._connect()
            return self._conn.execute(sql, params).fetchone()
        except psycopg.Error as e:
            self._drop()
            raise store_error(what, e) from e

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._session += 1
        self._held.clear()  # the server released them with the session
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a broken connection: nothing more to do
                pass
