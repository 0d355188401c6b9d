"""Group commit into PostgreSQL: many new messages per transaction, 250 after COMMIT.

Contract:
  * `Committer(pool, health)` owns one thread. `submit(spool, envelope,
    hold)` returns a future at once (never waits, never raises: safe on the
    event loop); the thread takes every request waiting (up to MAX_BATCH
    messages or MAX_BATCH_OCTETS of content) and writes them in ONE
    transaction: the entry rows, the content in CHUNK-octet rows (COPY, in
    binary), and a NOTIFY on CHANNEL that wakes idle nodes (delivered by
    PostgreSQL only at the COMMIT; its payload is `origin`, the committing
    node and process, so that process's own listener can ignore it: its
    manager starts that mail itself). Each future resolves to None only after
    that COMMIT returned (CONTRIBUTING.md, rule 9: durable before
    acknowledged), or to a StoreError with nothing recorded.
  * A failed batch records nothing (one transaction). When it failed on a
    constraint (SQLSTATE class 23: a queue ID that clashed across nodes),
    its messages are retried one per transaction, so one bad message fails
    alone; any other failure (the database down or full) fails the whole
    batch, and `health` is told; a successful batch tells it too.
  * A request whose spool is not open (discarded, failed, committed,
    committing) or whose envelope names another queue ID is refused without
    touching the database. A refused or failed request's spool is failed.
  * `close()` finishes what was submitted, then stops the thread; a submit
    after that is refused.
  * After the COMMIT, each message of at most one content row goes into
    `recent` (pigeon/store/pg/recent.py), so this node's delivery of it
    reads no row back.
  * stats: commits (messages), batches (transactions committed), failed
    (messages refused), max_batch.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pigeon.queue.health import StorageHealth
from pigeon.queue.model import Envelope
from pigeon.store.pg.db import Pool, store_error
from pigeon.store.pg.recent import RecentContent
from pigeon.store.pg.spool import PgSpool
from pigeon.vocab.errors import StoreError
from pigeon.vocab.states import QueueState

__all__ = ["CHANNEL", "CHUNK", "Committer"]

log = logging.getLogger("pigeon.queue")

CHANNEL = "pigeon_queue"  # LISTEN/NOTIFY channel: new mail is due
CHUNK = 256 * 1024  # octets per pigeon_content row
MAX_BATCH = 256
MAX_BATCH_OCTETS = 32 << 20

_INSERT = (
    "INSERT INTO pigeon_queue (queue_id, state, next_attempt, envelope, size) "
    "VALUES (%s, %s, %s, %s, %s)"
)
_COPY = "COPY pigeon_content (queue_id, seq, data) FROM STDIN (FORMAT BINARY)"


@dataclass
class _Request:
    spool: PgSpool
    envelope: Envelope
    hold: bool
    future: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future)


class Committer:
    def __init__(
        self,
        pool: Pool,
        health: StorageHealth,
        *,
        origin: str = "",
        recent: RecentContent | None = None,
    ) -> None:
        self._pool = pool
        self._health = health
        self._origin = origin
        self._recent = recent
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._lock = threading.RLock()  # submit() refuses while holding it
        self._closed = False
        self.stats = {"commits": 0, "batches": 0, "failed": 0, "max_batch": 0}
        self._thread = threading.Thread(target=self._run, name="pg-committer", daemon=True)
        self._thread.start()

    def submit(self, spool: Any, envelope: Envelope, hold: bool) -> concurrent.futures.Future[None]:
        req = _Request(spool, envelope, hold)
        with self._lock:
            if self._closed:
                return self._refuse(req, "store not open")
            if not isinstance(spool, PgSpool) or not spool.begin_commit():
                state = getattr(spool, "state", "foreign")
                return self._refuse(req, f"spool is {state}", fail_spool=False)
            if envelope.queue_id != spool.queue_id:
                spool.finish(False)
                return self._refuse(req, f"envelope names {envelope.queue_id}")
            self._queue.put(req)
        return req.future

    def _refuse(
        self, req: _Request, why: str, *, fail_spool: bool = True
    ) -> concurrent.futures.Future[None]:
        if fail_spool and isinstance(req.spool, PgSpool):
            req.spool.discard()
        with self._lock:
            self.stats["failed"] += 1
        req.future.set_exception(StoreError(f"queue_id={req.spool.queue_id} commit: {why}"))
        return req.future

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch, octets = [first], first.spool.size
            while len(batch) < MAX_BATCH and octets < MAX_BATCH_OCTETS:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
                octets += nxt.spool.size
            self._commit(batch)

    def _commit(self, batch: list[_Request]) -> None:
        try:
            kept = self._write(batch)
        except StoreError as e:
            import psycopg

            cause = e.__cause__
            if len(batch) > 1 and isinstance(cause, psycopg.errors.IntegrityError):
                for req in batch:  # one clash must not fail its neighbours
                    self._commit([req])
                return
            self._failed(batch, e)
            return
        except Exception as e:  # a bug: still never leave a future unresolved
            log.exception("commit batch failed")
            self._failed(batch, StoreError(f"commit: {e!r}"))
            return
        if self._recent is not None:
            for qid, data in kept:
                self._recent.put(qid, data)
        for req in batch:
            req.spool.finish(True)
            req.future.set_result(None)
        with self._lock:
            self.stats["commits"] += len(batch)
            self.stats["batches"] += 1
            self.stats["max_batch"] = max(self.stats["max_batch"], len(batch))
        self._health.succeeded()

    def _failed(self, batch: list[_Request], err: StoreError) -> None:
        if err.storage_fault:
            self._health.failed(err)
        with self._lock:
            self.stats["failed"] += len(batch)
        for req in batch:
            req.spool.finish(False)
            req.future.set_exception(err)

    def _write(self, batch: list[_Request]) -> list[tuple[str, bytes]]:
        """One transaction for `batch`; returns (queue ID, content) of each
        single-row message, for `recent` once committed."""
        import psycopg

        now = time.time()
        rows = []
        for req in batch:
            env = req.envelope
            state = QueueState.HOLD if req.hold else QueueState.INCOMING
            at = env.received_at or now
            data = json.dumps(env.to_dict(), separators=(",", ":"))
            rows.append((env.queue_id, str(state), at, data, req.spool.size))
        kept: list[tuple[str, bytes]] = []
        with self._pool.conn("queue commit") as conn:
            try:
                with conn.transaction():
                    with conn.cursor() as cur:
                        cur.executemany(_INSERT, rows)
                        with cur.copy(_COPY) as copy:
                            copy.set_types(["text", "int4", "bytea"])
                            for req in batch:
                                one = self._copy_content(copy, req)
                                if one is not None:
                                    kept.append((req.spool.queue_id, one))
                        cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self._origin))
            except psycopg.Error as e:
                raise store_error("queue commit", e) from e
        return kept

    @staticmethod
    def _copy_content(copy: Any, req: _Request) -> bytes | None:
        """Copy the message's rows; its content when it fit in one row, else None."""
        qid, seq, pending = req.spool.queue_id, 0, bytearray()
        for piece in req.spool.pieces():
            pending += piece
            while len(pending) >= CHUNK:
                copy.write_row((qid, seq, bytes(pending[:CHUNK])))
                del pending[:CHUNK]
                seq += 1
        if seq == 0:
            data = bytes(pending)
            if data:  # an empty message has no rows (manager.load() knows)
                copy.write_row((qid, 0, data))
            return data
        if pending:
            copy.write_row((qid, seq, bytes(pending)))
        return None
