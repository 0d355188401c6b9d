"""PgAbuseState: the abuse controls' counters shared by the nodes of a cluster.

The rate limits' token buckets and the greylist's triplets
(pigeon/policy/abusestate.py) are asked on the event loop at every
connection, MAIL and RCPT: they must stay in memory. With a shared store
each node keeps the same in-memory tables and syncs them with the table
`pigeon_abuse_state` (migrations/0003_directory.sql) once a
`flush_interval`, so limits count what every node saw.

Contract:
  * The surface of `AbuseState` (`open()`, `table(kind)` giving the same
    `StateTable`, `flush()`, `close()`): the policy checks cannot tell the
    two apart, and their hot path is unchanged (a dict look-up; no I/O,
    no wait on the database).
  * A sync (one writer thread, every `flush_interval` seconds; `flush()`
    does one now) is one transaction under an advisory lock (ABUSE_KEY),
    so syncs of all nodes are serialised and the rows' `version` (a
    sequence drawn inside the lock) commits in increasing order:
      push  the entries this node changed since the last sync. Token
            buckets ("bucket") are merged, not overwritten: the shared
            level is refilled to the later of the two times at the rate
            stored with the bucket (pigeon/policy/ratelimit.py puts it in
            the third value) over `time_unit`, then the tokens this node
            took since the last sync are subtracted (at least 0 is left).
            Other kinds (greylist) are last-write-wins, as in one process.
      pull  every row whose version is newer than the last one seen,
            into memory, except entries changed here meanwhile (they are
            pushed at the next sync).
  * So a limit counts across nodes with a lag of one sync: within one
    `flush_interval` the nodes together may let through up to one
    interval's worth of takes more than the limit (each node alone never
    more than its limit). A greylisted triplet retried on another node is
    known there after one sync.
  * Memory: each table keeps `max_entries` entries; one dropped from memory
    stays in the database (another node may be counting it). The database
    keeps the newest `max_entries` rows per kind (pruned every PRUNE_EVERY
    syncs).
  * Failures: the counters are a cache of decisions, not mail. A database
    that cannot be reached at open or at a sync is logged (once per
    outage) and the node goes on with its memory; what it changed is kept
    and pushed once the database answers, then what it missed is pulled.
    At the stop, what is left is synced unless the database was down at
    the last try (the stop does not wait a connect timeout for a cache).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from pigeon.policy.abusestate import FLUSH_INTERVAL, MAX_ENTRIES, AbuseState, Values
from pigeon.store.pg.db import Pool
from pigeon.vocab.errors import StoreError

__all__ = ["ABUSE_KEY", "PgAbuseState"]

log = logging.getLogger("pigeon.policy")

#: pg_advisory_xact_lock key serialising syncs ("pigeonab" as an int).
ABUSE_KEY = 0x7069_6765_6F6E_6162 - (1 << 63)
PRUNE_EVERY = 60
BUCKET = "bucket"

_UPSERT = """
INSERT INTO pigeon_abuse_state (kind, key, a, b, c) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (kind, key) DO UPDATE SET a = EXCLUDED.a, b = EXCLUDED.b, c = EXCLUDED.c,
    version = nextval('pigeon_abuse_version')"""

# A bucket: refill the shared level to the later time (capped at the rate),
# then take this node's tokens. %(n)s: tokens taken here since the last sync.
_MERGE_BUCKET = """
INSERT INTO pigeon_abuse_state (kind, key, a, b, c)
VALUES (%(kind)s, %(key)s, %(a)s, %(b)s, %(c)s)
ON CONFLICT (kind, key) DO UPDATE SET
    a = greatest(0.0, least(EXCLUDED.c, pigeon_abuse_state.a
          + greatest(0.0, EXCLUDED.b - pigeon_abuse_state.b) * EXCLUDED.c / %(unit)s)
        - %(n)s),
    b = greatest(EXCLUDED.b, pigeon_abuse_state.b),
    c = EXCLUDED.c,
    version = nextval('pigeon_abuse_version')"""

_PRUNE = """
DELETE FROM pigeon_abuse_state WHERE kind = %(kind)s AND version <= (
    SELECT version FROM pigeon_abuse_state WHERE kind = %(kind)s
    ORDER BY version DESC OFFSET %(keep)s LIMIT 1)"""


class PgAbuseState(AbuseState):
    """In-memory tables synced with the shared database (module contract).

    An `AbuseState` without a file: its tables, its writer thread and its
    close; what a flush does is a sync here."""

    def __init__(
        self,
        dsn: str,
        *,
        time_unit: float,
        flush_interval: float = FLUSH_INTERVAL,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        super().__init__(None, flush_interval=flush_interval, max_entries=max_entries)
        self.dsn = dsn
        self.time_unit = time_unit
        self._pool = Pool(dsn, size=1, application_name="pigeon abuse state")
        self._taken: Counter[tuple[str, str]] = Counter()  # guarded by _lock, as _dirty
        self._seen = 0  # the newest version pulled
        self._syncs = 0
        self._down = False

    def open(self) -> PgAbuseState:
        self.flush()  # the first pull: everything (logged, not raised, when down)
        self._thread = threading.Thread(target=self._run, name="pigeon-abuse-sync", daemon=True)
        self._thread.start()
        return self

    def changed(self, kind: str, key: str, values: Values | None) -> None:
        with self._lock:
            self._dirty[(kind, key)] = values
            if kind == BUCKET and values is not None:
                self._taken[(kind, key)] += 1  # RateLimiter.take: one put per token

    def evicted(self, kind: str, key: str) -> None:
        """Dropped from memory only: the shared row stays (module contract)."""

    def flush(self) -> None:
        """One sync now: push, then pull (module contract)."""
        if self._closed and self._down:
            return  # the stop: no wait for a database that did not answer last time
        with self._write_lock:  # one sync at a time
            with self._lock:
                dirty, self._dirty = self._dirty, {}
                taken, self._taken = self._taken, Counter()
            try:
                with self._pool.conn("abuse state sync") as conn, conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (ABUSE_KEY,))
                    self._push(conn, dirty, taken)
                    rows = conn.execute(
                        "SELECT kind, key, a, b, c, version FROM pigeon_abuse_state "
                        "WHERE version > %s ORDER BY version",
                        (self._seen,),
                    ).fetchall()
                    self._syncs += 1
                    if self._syncs % PRUNE_EVERY == 0:
                        for kind in list(self._tables):
                            conn.execute(_PRUNE, {"kind": kind, "keep": self.max_entries})
            except StoreError as exc:
                if not self._down:
                    log.warning(
                        "abuse state: cannot sync with the database (%s): kept in memory", exc
                    )
                self._down = True
                with self._lock:  # pushed next time; newer changes win, takes add up
                    self._dirty = {**dirty, **self._dirty}
                    self._taken.update(taken)
                return
            if self._down:
                log.info("abuse state: the database answers again; synced")
                self._down = False
            self._apply(rows)

    def _push(
        self,
        conn: Any,
        dirty: dict[tuple[str, str], Values | None],
        taken: Counter[tuple[str, str]],
    ) -> None:
        gone = [(kind, key) for (kind, key), v in dirty.items() if v is None]
        plain = [(k, key, *v) for (k, key), v in dirty.items() if v is not None and k != BUCKET]
        buckets = [
            {
                "kind": k,
                "key": key,
                "a": v[0],
                "b": v[1],
                "c": v[2],
                "unit": self.time_unit,
                "n": float(taken.get((k, key), 0)),
            }
            for (k, key), v in dirty.items()
            if v is not None and k == BUCKET
        ]
        with conn.cursor() as cur:
            if gone:
                cur.executemany("DELETE FROM pigeon_abuse_state WHERE kind=%s AND key=%s", gone)
            if plain:
                cur.executemany(_UPSERT, plain)
            if buckets:
                # The level this node computed already has its takes in it:
                # a new row starts from it; an existing row is merged (n).
                cur.executemany(_MERGE_BUCKET, buckets)

    def _apply(self, rows: list[tuple[Any, ...]]) -> None:
        for kind, key, a, b, c, version in rows:
            self._seen = max(self._seen, int(version))
            with self._lock:
                if (kind, key) in self._dirty:
                    continue  # changed here meanwhile: ours goes out next sync
            self.table(kind)._load(key, (a, b, c))

    def close(self) -> None:
        super().close()  # stops the thread, syncs what is left
        self._pool.close()
