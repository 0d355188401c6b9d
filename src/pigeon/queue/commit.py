"""Group commit: the one thread that makes new mail durable before its 250.

Product promise (CONTRIBUTING.md, rule 9): a 250 after DATA/BDAT means the
content *and* its envelope are on stable storage. This module keeps it.

Contract:
  * `Committer.submit(spool, envelope)` (the store's `commit_async`) is
    safe from any thread and never blocks on a disk: it checks the spool
    (`SpoolFile.begin_commit`) and queues the request; the returned future
    resolves to None once content and row are durable, or to a
    `StoreError`. One committer thread per open store takes every request
    pending at that instant (a batch) and commits them together. There is
    no artificial delay: requests that arrive while one batch syncs form
    the next, so an idle server commits at once and a busy one batches more.
  * Rule 1: a row exists only if its content file is durable. For each
    batch, in this order: every content file is made durable under
    msg/<id> (an in-memory spool is written straight there with its
    preamble in the same write: O_CREAT|O_EXCL, writev, fsync, close; a
    spilled one, whose tmp/ file began with its preamble when it spilled,
    is fsynced in tmp/ and hard-linked into msg/, also exclusively), in
    parallel for batches of `PARALLEL_MIN` or more (a spool with header
    fields to put on top, `SpoolFile.prepend`, gets them in the same writev
    when in memory; a spilled one is then written to msg/<id> like an
    in-memory one, its tmp/ content copied in behind the fields, in the
    kernel, and its tmp/ file removed; so is a spilled captured one, whose
    draft preamble lacks the capture mark a rebuild needs); msg/ is
    fsynced ONCE;
    all rows are inserted in ONE transaction ('incoming', or 'hold' for a
    commit made on hold: a quarantined message, or 'capture' for an
    envelope with `capture` set: docs/capture.md; dbfile.transaction; its
    commit fsyncs the WAL once, synchronous=FULL); only then are the
    futures resolved. The caller replies 250 after its future resolves, so
    "acknowledged" implies "row committed". A crash at any instant before
    the COMMIT leaves msg/ files without rows (whole or partial, carrying
    this database's store id: recovery deletes them, queue/recovery.py
    Rule 2) and nothing acknowledged; after it, rows and complete, durable
    files.
  * Rule 3: no half-records. If any step fails for a request its future
    gets a `StoreError` (`.disk_full` for ENOSPC/EDQUOT: the caller answers
    452, else 451) and the files it created are unlinked (never a msg/<id>
    it did not create: creation is exclusive); other requests of the batch
    are unaffected unless the shared step (directory fsync, transaction)
    failed, in which case the whole batch fails the same way. Storage
    faults go to `health` (logged once per episode); a successful batch
    tells `health` the storage works.
  * Each batch runs under `BatchLock.shared()` (queue.lock shared, and the
    in-process lock): recovery takes it exclusively, so it never judges a
    msg/ file whose row is about to be inserted, in this process or another.
  * `paused()` is how recovery takes that lock and borrows the committer's
    FULL connection (free while the lock is held) for its one transaction.
  * Cost per batch of n messages: n file creates, writes, fsyncs and
    closes (in memory: no tmp file, no rename), one directory fsync, one
    WAL commit; the committer thread does the first file itself and a pool
    of `FSYNC_THREADS` the rest, so a batch of one wakes no other thread.
  * `fsync=False` skips every fsync and sets SQLite synchronous=OFF: for
    tests and benchmarks only; it breaks the promise.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import json
import logging
import os
import queue as _queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from pigeon import msgfile
from pigeon.queue.dbfile import BatchLock, transaction
from pigeon.queue.files import ContentFiles
from pigeon.queue.health import StorageHealth, store_error
from pigeon.queue.model import Envelope
from pigeon.queue.spool import SpoolFile, Spools
from pigeon.vocab.errors import StoreError
from pigeon.vocab.states import QueueState

__all__ = ["Committer", "FSYNC_THREADS", "PARALLEL_MIN", "INSERT_SQL"]

log = logging.getLogger("pigeon.queue")

# Content files of one batch are written and fsynced in parallel: concurrent
# fsyncs share the file system's journal commits (ext4, 2-core VM, 1 KB
# files, serial vs parallel: 4 files 2.3 vs 1.7 ms, 16 files 6.9 vs 3.6 ms,
# 50 files 16.7 vs 10.6 ms). 16 threads did as well as 32 or 64 and keep
# fewer threads contending for the GIL. A batch of one is written by the
# committer thread itself: no thread to wake.
FSYNC_THREADS = 16  # at most this many content files in flight
PARALLEL_MIN = 2

INSERT_SQL = "INSERT INTO queue (queue_id, state, next_attempt, envelope) VALUES (?, ?, ?, ?)"

_O_MSG = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
# Hard links unsupported by the file system: rename instead (see _link_into_msg).
_NO_LINK_ERRNOS = {errno.EPERM, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


@dataclass(slots=True)
class _Request:
    spool: SpoolFile
    envelope: Envelope
    future: concurrent.futures.Future[None]
    state: QueueState = QueueState.INCOMING  # the row's first state ('hold': quarantined)
    placed: bool = False  # msg/<id> was created by this request (ours to unlink)
    envelope_json: str = ""  # the row's envelope column, also the preamble's JSON


class Committer:
    """The group-committing thread of one open store (see the contract)."""

    def __init__(
        self,
        *,
        files: ContentFiles,
        spools: Spools,
        conn: sqlite3.Connection,
        store_id: str,
        lock: BatchLock,
        health: StorageHealth,
        fsync: bool,
    ) -> None:
        self._files = files
        self._spools = spools
        self._disk = spools.disk  # the system calls, a seam (files.Disk)
        self._conn = conn  # synchronous=FULL; this thread's, or recovery's while paused
        self._store_id = store_id
        self._lock = lock
        self._health = health
        self._fsync = fsync
        self._requests: _queue.SimpleQueue[_Request | None] = _queue.SimpleQueue()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._open = False
        self.stats = {"commits": 0, "batches": 0, "failed": 0, "max_batch": 0}

    def start(self) -> None:
        if self._fsync:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                FSYNC_THREADS, thread_name_prefix="pigeon-queue-fsync"
            )
        self._thread = threading.Thread(target=self._run, name="pigeon-queue-commit", daemon=True)
        self._open = True
        self._thread.start()

    def stop(self) -> None:
        """Finish the pending commits, then stop the thread and the pool."""
        self._open = False
        self._requests.put(None)
        if self._thread is not None:
            self._thread.join()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    @property
    def pool(self) -> concurrent.futures.ThreadPoolExecutor | None:
        """The fsync pool (None without fsync): recovery syncs adopted files with it."""
        return self._pool

    def submit(
        self, spool: SpoolFile, envelope: Envelope, *, hold: bool = False
    ) -> concurrent.futures.Future[None]:
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        try:
            spool.begin_commit(envelope)
        except StoreError as exc:
            fut.set_exception(exc)
            return fut
        if not self._open:
            spool.abort_commit()
            fut.set_exception(StoreError("queue store is closed"))
            return fut
        state = QueueState.HOLD if hold else QueueState.INCOMING
        if envelope.capture:  # capture mode: kept, never scheduled (docs/capture.md)
            state = QueueState.CAPTURE
        self._requests.put(_Request(spool, envelope, fut, state))
        return fut

    @contextlib.contextmanager
    def paused(self) -> Iterator[sqlite3.Connection]:
        """No batch runs, in this process or another, until the block ends;
        the FULL connection is the caller's meanwhile (recovery)."""
        with self._lock.exclusive():
            yield self._conn

    # --- the thread -----------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._requests.get()
            if first is None:
                break
            batch = [first]
            # Group commit: everything that arrived while the previous batch
            # was syncing goes into this one. No artificial delay: under load
            # batches grow by themselves, idle latency stays one fsync round.
            while True:
                try:
                    req = self._requests.get_nowait()
                except _queue.Empty:
                    break
                if req is None:
                    stop = True
                    break
                batch.append(req)
            with self._lock.shared():
                try:
                    self._commit_batch(batch)
                except BaseException as e:  # a bug: never leave a session hanging
                    # Files are left where they are: with a row they will be
                    # delivered (maybe twice: the client saw 451), without one
                    # recovery removes them. Deleting here could lose mail.
                    log.exception("queue committer failed")
                    for req in batch:
                        if not req.future.done():
                            req.future.set_exception(StoreError(f"internal error: {e!r}"))

    def _commit_batch(self, batch: list[_Request]) -> None:
        """Rule 1 for one batch: contents durable, msg/ fsynced once, rows in
        one transaction, then the futures."""
        ready: list[_Request] = []
        for req, err in zip(batch, self._persist_all(batch)):
            if err is None:
                ready.append(req)
            else:
                self._fail(req, store_error(f"commit {req.spool.queue_id}", err))
        if ready:
            try:
                if self._fsync:
                    try:
                        self._disk.fsync_dir(self._files.directory)
                    except OSError as e:
                        raise store_error("group commit", e) from e
                self._insert_rows(ready)
            except StoreError as err:
                for req in ready:
                    self._fail(req, err)
                ready = []
        stats = self.stats
        stats["batches"] += 1
        stats["commits"] += len(ready)
        if len(batch) > stats["max_batch"]:
            stats["max_batch"] = len(batch)
        self._spools.finished([req.spool.queue_id for req in ready])
        if ready:
            self._health.succeeded()
        for req in ready:
            req.spool.committed()
            req.future.set_result(None)

    def _persist_all(self, batch: list[_Request]) -> list[OSError | None]:
        """Make every content file of the batch durable in msg/; one error (or
        None) per request, in order. The committer thread takes the first
        request itself and the pool the rest, so a batch of n wakes n - 1 threads.

        Create, write and fsync all happen in the pool: creating the files
        first on this thread and only then fsyncing in parallel was measured
        slower (each create then waited ~1 ms for the GIL or the journal, one
        after the other, instead of side by side).
        """
        pool = self._pool
        if pool is None or len(batch) < PARALLEL_MIN:
            return [self._persist(req) for req in batch]
        futures = [pool.submit(self._persist, req) for req in batch[1:]]
        return [self._persist(batch[0])] + [f.result() for f in futures]

    def _persist(self, req: _Request) -> OSError | None:
        """Put one spool's content durably at msg/<id>; return the error, if any."""
        # Serialised once, here (in parallel for a batch): the row's column
        # and the preamble of an in-memory spool are the same JSON.
        req.envelope_json = json.dumps(req.envelope.to_dict(), separators=(",", ":"))
        try:
            # A captured message is never left with its draft preamble: the
            # capture mark must be in the file for a rebuild (docs/capture.md).
            if req.spool.in_memory or req.spool.has_fields or req.envelope.capture:
                self._write_msg(req)
            else:
                req.spool.sync_spilled(self._fsync)
                self._link_into_msg(req)
        except OSError as e:
            return e
        return None

    def _write_msg(self, req: _Request) -> None:
        """Write msg/<id>: create it exclusively, write preamble, prepended
        fields and content, fsync, close. An in-memory spool does it in one
        writev; a spilled one with fields gets its tmp/ content copied in
        behind them (in the kernel), then its tmp/ name goes (a leftover one
        is removed by recovery).

        O_EXCL: should two processes ever draw the same ID, the second commit
        fails instead of overwriting the first's content.
        """
        spool, disk = req.spool, self._disk
        head = msgfile.encode(self._store_id, req.envelope_json.encode())
        fd = disk.open(self._files.path(spool.queue_id), _O_MSG, 0o600)
        req.placed = True
        try:
            if spool.in_memory:
                spool.write_to(fd, head)
            else:
                spool.copy_behind_fields(fd, head)
            if self._fsync:
                disk.fsync(fd)
        finally:
            os.close(fd)
        if not spool.in_memory:
            _unlink_best_effort(spool.path)

    def _link_into_msg(self, req: _Request) -> None:
        """Give the synced tmp/<id> its msg/<id> name without ever replacing a
        file there (link fails with EEXIST where rename would overwrite), then
        drop the tmp/ name. A crash in between leaves both names and no row:
        recovery removes both."""
        src, dst = req.spool.path, self._files.path(req.spool.queue_id)
        try:
            os.link(src, dst)
        except OSError as e:
            if e.errno not in _NO_LINK_ERRNOS:
                raise
            os.rename(src, dst)  # no hard links on this file system
            req.placed = True
            return
        req.placed = True
        _unlink_best_effort(src)  # a leftover tmp/ name is removed by recovery

    def _insert_rows(self, reqs: list[_Request]) -> None:
        now = time.time()
        rows = [
            (r.envelope.queue_id, r.state.value, r.envelope.received_at or now, r.envelope_json)
            for r in reqs
        ]
        with transaction(self._conn, "group commit") as db:
            db.executemany(INSERT_SQL, rows)

    def _fail(self, req: _Request, err: StoreError) -> None:
        """Rule 3: no half-record. Remove the files this request created:
        its tmp/<id> (if it spilled) and its msg/<id> (only if it made it)."""
        self.stats["failed"] += 1
        spool = req.spool
        spool.abort_commit()
        if req.placed:
            _unlink_best_effort(self._files.path(spool.queue_id))
        if err.storage_fault:
            self._health.failed(err)  # logs the episode once (queue/health.py)
            log.debug("queue commit failed: queue_id=%s error=%s", spool.queue_id, err)
        else:
            log.error("queue commit failed: queue_id=%s error=%s", spool.queue_id, err)
        req.future.set_exception(err)


def _unlink_best_effort(path: str) -> None:
    """Cleanup after a failure must not fail in turn: a file left behind has
    no row, so recovery removes it at the next start."""
    try:
        os.unlink(path)
    except OSError:
        pass
