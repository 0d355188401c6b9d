"""The durable queue: message files plus envelope rows in SQLite, with group commit.

Product promise: a 250 after DATA/BDAT means the content *and* its envelope
are on stable storage. This module is where that promise is kept.

On-disk layout under `root` (config.queue_dir)::

    tmp/<id>     spool spilled to disk by an SMTP session (content over
                 spool.SPILL_THRESHOLD; smaller spools live in memory only)
    msg/<id>     content: a preamble (the envelope and the store id, see
                 pigeon/msgfile.py), then the raw message, CRLF, our Received:
                 on top. Committed only once its row exists; a file without
                 a row is judged by the recovery rules below
    queue.db     SQLite, WAL; new messages are committed with synchronous=FULL,
                 the manager's state changes with NORMAL (see open()); one row per message:
                 queue_id, state, next_attempt, envelope (Envelope.to_dict() JSON);
                 table meta: the store id (queue/dbfile.py)
    queue.lock   flock()ed: shared by every process's committer during a
                 batch, exclusive by recover() (so recovery in one process
                 never deletes a file another process is about to commit)
    owner.lock   flock()ed for the life of the queue's owner: shared by
                 `pigeon serve` (open(owner=True)), exclusive by `pigeon queue
                 rebuild` (queue/rebuild.py), so neither runs while the other does

States: 'incoming' (new, due now), 'active' (a delivery is running),
'deferred' (waiting for next_attempt), 'hold' (operator), 'corrupt'
(quarantined: unreadable envelope, missing content, or a content file that
recovery could neither rebuild nor prove unacknowledged; never deleted by us).

Commit protocol (one committer thread, group commit). Rules:
  Rule 1: a row exists only if its content file is durable. The committer
          takes every request pending at that instant and, in this order:
          makes each content file durable under msg/<id> (an in-memory spool
          is written straight there with its preamble in the same write:
          O_CREAT|O_EXCL, writev, fsync, close; a spilled one, whose tmp/
          file began with its preamble when it spilled, is fsynced in tmp/
          and hard-linked into msg/, also exclusively), in parallel for big
          batches (see _PARALLEL_MIN);
          A spool with header fields to put on top (`SpoolFile.prepend`)
          gets them in the same writev when in memory; a spilled one is
          then written to msg/<id> like an in-memory one, its tmp/ content
          copied in behind the fields (os.copy_file_range: in the kernel),
          and its tmp/ file removed;
          fsyncs msg/ ONCE; inserts all rows in ONE SQLite transaction (its
          commit fsyncs the WAL once); only then resolves the futures. The
          caller replies 250 after its future resolves, so "acknowledged"
          implies "row committed". A crash at any instant before the COMMIT
          leaves msg/ files without rows (whole or partial, carrying this
          database's store id: Rule 2 removes them) and nothing
          acknowledged; after it, rows and complete, durable files.
  Rule 2: a content file without a row whose preamble carries THIS
          database's store id was never acknowledged (or was removed, Rule
          4): recover() deletes it; so is every tmp/ file. recover() waits
          for running batches of this process (_batch_lock) and of others
          (queue.lock).
  Rule 3: no half-records. If any step fails for a request its future gets a
          `StoreError` (`.disk_full` for ENOSPC/EDQUOT, the caller answers
          452/451) and the files it created are unlinked (never a msg/<id>
          it did not create: creation is exclusive); other requests of the
          batch are unaffected unless the shared step (directory fsync,
          transaction) failed, in which case the whole batch fails the same way.
  Rule 4: removal deletes the row first, then the file (a crash in between
          leaves a file without a row: Rule 2 cleans it up).
  Rule 5: content is never deleted because the database lost track of it.

Recovery: the database can lose track of files (queue.db deleted,
truncated to 0 bytes, replaced by an older backup or an empty file). Every
content file therefore carries its envelope and the store id of the
database it was committed under (pigeon/msgfile.py); the store id is random,
made when queue.db gets its schema (dbfile.py), so a new or recreated
database never shares it with older files. recover() judges each msg/
file WITHOUT a row (queue/recovery.py has the full table):
  * its store id is this database's: Rule 2, delete (never acknowledged);
  * another store id: the database lost track of it: ADOPT, i.e. rebuild
    its row from the preamble ('incoming', due at once), log one line with
    the count, and rewrite the file's store id to this database's (after
    the rows are durable: a crash in between leaves rows, never an adopted
    file that Rule 2 would take for a leftover);
  * no preamble (a file of the version before the preamble), a damaged
    preamble or envelope: quarantine, i.e. a 'corrupt' row with the file
    kept in msg/ (`pigeon queue list`, `show`, `delete` see it);
  * empty, or cut inside its fixed first line: there is no message in it,
    delete;
  * a name that is not a queue ID: not ours, left alone (logged).
A missing or empty queue.db is therefore rebuilt automatically at start-up.
What a rebuild cannot know, it errs towards delivering: per-recipient
status lives only in the database, so a rebuilt message goes to all its
recipients again (some may get it twice, none zero times); attempts, the
delay warning and hold are forgotten; received_at (hence the expiry) is
kept. `pigeon queue rebuild` (queue/rebuild.py) adopts every file without a row
whatever its store id, for a queue.db restored from a backup, whose store
id is the files' own: run it after any restore, before starting pigeon.
A damaged queue.db (not a database, malformed, failing `PRAGMA
quick_check` when the owner opens it) is refused with one line naming the
file and `pigeon queue rebuild --from-files`, which moves it aside to
queue.db.corrupt-<time> and rebuilds from the files (dbfile.StoreCorrupt).

Why the envelope lives in the content file and not in a file of its own
or an extended attribute: a second file costs a create and an fsync per
message on the acceptance path (the cost the commit protocol exists to
avoid), and extended attributes are lost by ordinary copies and backups,
the very situations a rebuild is for. The preamble costs no system call:
it travels in the write (or the spill) that carries the content.

Why SQLite + files and not Postfix's one-file-per-state directories: Postfix
pays several fsyncs per message (file, directory, each state move). Here N
concurrent messages cost N file fsyncs + 1 directory fsync + 1 WAL fsync, and
state changes are row updates. A message under the spill threshold costs no
system call before the commit and then one create, write, fsync and close:
no tmp file, no rename. Bodies stay plain files so delivery can stream
them and operators can read them (`head -2` shows the preamble; readers
skip it with msgfile.open_message()). There is no artificial batching delay:
requests that arrive while one batch syncs form the next batch, so an idle
server commits at once and a busy one batches more.

`store.space` (queue/space.py) is the free-space reserve the SMTP side
checks before MAIL and DATA; `store.health` and `store.space` are safe from
any thread.

Threading: `new_spool`, `SpoolFile.*`, `commit_async`, `commit` and `stats`
are safe from any thread (the SMTP side runs them on the event loop; they
never block on disk sync; only a spool passing the spill threshold touches
the file system). Everything else is *manager-side*: only the queue
manager (the single owner of queue state) calls it, from one
thread at a time; it blocks on SQLite and fsync, so the manager runs it via
`asyncio.to_thread`. Never call the manager-side API from the event loop of
an SMTP server.

Failure modes: disk full / I/O errors during commit -> `StoreError` on the
future (`.storage_fault` set; the committer also tells `store.health`,
queue/health.py, which logs the episode once); a corrupt or unreadable
envelope -> the row is moved to 'corrupt' with
a log line on "pigeon.queue" and `CorruptEntry` is raised to the manager,
which skips the message; a damaged queue.db -> `StoreCorrupt` from open();
the owner lock held by another process -> `StoreBusy` from open();
the store never raises anything else for data it holds.
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pigeon import msgfile
from pigeon.fsutil import ensure_file, fsync_dir, write_probe
from pigeon.queue.dbfile import (
    DbState,
    StoreBusy,
    StoreCorrupt,
    is_corruption,
    lock_owner,
    open_lock_file,
    prepare,
)
from pigeon.queue.health import StorageHealth
from pigeon.queue.model import Envelope
from pigeon.queue.recovery import Action, Verdict, judge_file
from pigeon.queue.schedule import split_slots
from pigeon.queue.space import FreeSpace

# _IdGenerator is re-exported for the tests of queue IDs.
from pigeon.queue.spool import (  # noqa: F401
    NEW_ID,
    CorruptEntry,
    SpoolFile,
    StoreError,
    _IdGenerator,
    _store_error,
)
from pigeon.vocab.states import STATES, QueueState

try:
    import fcntl
except ImportError:  # not POSIX: no cross-process recovery lock
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CorruptEntry",
    "QueueEntry",
    "QueueStore",
    "RecoveryReport",
    "SpoolFile",
    "StoreBusy",
    "StoreCorrupt",
    "StoreError",
    "STATES",
]

log = logging.getLogger("pigeon.queue")


# Content files of one batch are written and fsynced in parallel: concurrent
# fsyncs share the file system's journal commits (ext4, 2-core VM, 1 KB
# files, serial vs parallel: 4 files 2.3 vs 1.7 ms, 16 files 6.9 vs 3.6 ms,
# 50 files 16.7 vs 10.6 ms). 16 threads did as well as 32 or 64 and keep
# fewer threads contending for the GIL. A batch of one is written by the
# committer thread itself: no thread to wake.
FSYNC_THREADS = 16  # at most this many content files in flight
_PARALLEL_MIN = 2

_O_MSG = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
# Hard links unsupported by the file system: rename instead (see _link_into_msg).
_NO_LINK_ERRNOS = {errno.EPERM, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}

#: The due query for ONE state: an index range search on queue_due with the
#: ORDER BY satisfied by the index (no sort), so it reads at most LIMIT rows.
#: Tests check this with EXPLAIN QUERY PLAN.
DUE_SQL = (
    "SELECT queue_id FROM queue WHERE state=? AND next_attempt<=? ORDER BY next_attempt LIMIT ?"
)
NEXT_DUE_SQL = "SELECT MIN(next_attempt) FROM queue WHERE state=?"


@dataclass(slots=True)
class RecoveryReport:
    """What `QueueStore.recover()` found and did at start-up."""

    tmp_removed: list[str] = field(default_factory=list)
    orphans_removed: list[str] = field(default_factory=list)  # msg/ file without a row, deleted
    missing_content: list[str] = field(default_factory=list)  # row without msg/ file -> corrupt
    reactivated: list[str] = field(default_factory=list)  # 'active' -> 'incoming'
    rebuilt: list[str] = field(default_factory=list)  # row rebuilt from the file
    quarantined: list[str] = field(default_factory=list)  # file without a row -> corrupt row
    ignored: list[str] = field(default_factory=list)  # msg/ names that are not ours
    queued: int = 0  # rows in the queue afterwards


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One row as `QueueStore.list()` shows it; `envelope` None if unreadable."""

    queue_id: str
    state: str
    next_attempt: float
    envelope: Envelope | None


@dataclass(slots=True)
class _Request:
    spool: SpoolFile
    envelope: Envelope
    future: concurrent.futures.Future
    state: QueueState = QueueState.INCOMING  # the row's first state ('hold': quarantined)
    placed: bool = False  # msg/<id> was created by this request (ours to unlink)
    envelope_json: str = ""  # the row's envelope column, also the preamble's JSON


class QueueStore:
    """Message files + SQLite envelope rows, with a group-committing thread.

    `fsync=False` skips every fsync and sets SQLite synchronous=OFF: for tests
    and benchmarks only; it breaks the durability promise.
    """

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self._fsync = fsync
        self._tmp = self.root / "tmp"
        self._msg = self.root / "msg"
        self._msg_prefix = ""  # str(msg/) + "/", set by open()
        self._requests: _queue.SimpleQueue[_Request | None] = _queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._fsync_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock_fd: int | None = None  # queue.lock, see _flock()
        self._owner_fd: int | None = None  # owner.lock, see open()
        self._store_id = ""  # queue.db's, see dbfile.py
        #: What open() found: was queue.db created (missing, empty) or upgraded?
        self.db_state: DbState | None = None
        self._commit_db: sqlite3.Connection | None = None  # committer thread only
        self._db: sqlite3.Connection | None = None  # manager side, under _db_lock
        self._db_lock = threading.Lock()
        # Held by the committer for a whole batch: recover() takes it so it
        # never sees a renamed file whose row is about to be inserted.
        self._batch_lock = threading.Lock()
        self._live_lock = threading.Lock()
        self._live: set[str] = set()  # spools not yet finished
        self._closed = True
        self._stats = {"commits": 0, "batches": 0, "failed": 0, "max_batch": 0}
        # Storage faults seen by the committer and the manager (queue/health.py),
        # and the free-space reserve the SMTP side checks (queue/space.py).
        self.health = StorageHealth("queue")
        self.space = FreeSpace(self.root)

    # --- lifecycle ------------------------------------------------------------

    def open(self, *, owner: bool = False, verify: bool | None = None) -> None:
        """Create directories and the database, start the committer thread.

        `owner=True` (the serving pigeon, whose queue manager owns the
        queue): hold owner.lock shared while open, so `pigeon queue rebuild`
        refuses to run meanwhile (`StoreBusy` if a rebuild holds it now).
        `verify` (default: `owner`) runs `PRAGMA quick_check`. A damaged
        database raises `StoreCorrupt`, other failures `StoreError`; on
        failure nothing stays open.
        """
        self.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # data_dir
        for d in (self.root, self._tmp, self._msg):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        # SQLite would create it 0644 & ~umask; its -wal/-shm copy its mode.
        ensure_file(self.root / "queue.db", 0o600)
        self._msg_prefix = os.path.join(self._msg, "")
        db_path = self.root / "queue.db"
        try:
            if owner:
                self._owner_fd = lock_owner(self.root, exclusive=False)
            self._lock_fd = open_lock_file(self.root / "queue.lock")
            self._commit_db = self._connect()
            state = prepare(self._commit_db, db_path, verify=owner if verify is None else verify)
            # Manager-side changes (active, deferred, delivered, removed) need
            # not be fsync'ed one by one: losing the last of them to a power cut
            # can only make a delivery happen again, never lose a message (the
            # Maildir copy, or the new bounce via the committer, is durable
            # before the queue row changes). WAL + NORMAL still survives a
            # process crash, and the next FULL commit syncs these frames too.
            self._db = self._connect("NORMAL")
        except sqlite3.Error as e:  # from _connect(): prepare() converts its own
            self._release()
            if is_corruption(e):
                raise StoreCorrupt(db_path, str(e)) from None
            raise _store_error(f"queue database {db_path}", e) from None
        except BaseException:
            self._release()
            raise
        self._store_id, self.db_state = state.store_id, state
        if state.created and any(self._msg.iterdir()):
            log.warning(
                "queue database %s was missing or empty: created a new one; the queue "
                "is rebuilt from the files in %s",
                db_path,
                self._msg,
            )
        self._closed = False
        if self._fsync:
            self._fsync_pool = concurrent.futures.ThreadPoolExecutor(
                FSYNC_THREADS, thread_name_prefix="pigeon-queue-fsync"
            )
        self._thread = threading.Thread(
            target=self._committer, name="pigeon-queue-commit", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Finish pending commits, stop the committer, close the database."""
        if self._closed:
            return
        self._closed = True
        self._requests.put(None)
        if self._thread is not None:
            self._thread.join()
        if self._fsync_pool is not None:
            self._fsync_pool.shutdown()
            self._fsync_pool = None
        self._release()

    def _release(self) -> None:
        """Close the database connections and the lock files."""
        for conn in (self._commit_db, self._db):
            if conn is not None:
                conn.close()
        self._commit_db = self._db = None
        for name in ("_lock_fd", "_owner_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    def __enter__(self) -> QueueStore:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _connect(self, durable: str = "FULL") -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so one batch
        # is exactly one transaction (and one WAL fsync).
        conn = sqlite3.connect(
            self.root / "queue.db", isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={durable if self._fsync else 'OFF'}")
        return conn

    # --- SMTP side --------------------------------------------------------------

    def new_spool(self, envelope: Envelope | None = None) -> SpoolFile:
        """Allocate a queue ID and an empty spool (in memory: no system call).

        `envelope`: the envelope as known now (sender, recipients, params,
        client; its queue_id is set to the spool's). Should the spool spill
        to disk, its file begins with this envelope (msgfile.FLAG_DRAFT), so
        the message can be rebuilt if the database loses track of it. It
        can also be set later as `spool.envelope`, before the content is
        written. A spool held in memory gets the committed envelope instead.
        """
        if self._closed:
            raise StoreError("queue store is closed")
        qid = NEW_ID.next()
        # Live from now on: should the spool spill to tmp/<id>, a concurrent
        # recover() must not take that file for a leftover of a crash.
        with self._live_lock:
            self._live.add(qid)
        if envelope is not None:
            envelope.queue_id = qid
        return SpoolFile(self, qid, self._tmp / qid, envelope)

    @property
    def store_id(self) -> str:
        """The id of the open queue.db, written into every content file."""
        return self._store_id

    def _draft_preamble(self, spool: SpoolFile) -> bytes:
        """The preamble a spool writes when it spills (SpoolFile._spill)."""
        env = spool.envelope
        raw = (
            b"null"
            if env is None
            else json.dumps(
                env.to_dict() | {"queue_id": spool.queue_id}, separators=(",", ":")
            ).encode()
        )
        return msgfile.encode(self._store_id, raw, draft=True)

    def commit_async(
        self, spool: SpoolFile, envelope: Envelope, *, hold: bool = False
    ) -> concurrent.futures.Future:
        """Queue `spool` + `envelope` for the next group commit.

        The future resolves to None once content and row are durable, or to a
        `StoreError`. `envelope.queue_id` must equal `spool.queue_id`.
        `hold`: the entry starts in 'hold' (a quarantined message: accepted,
        delivered only once an operator releases it) instead of 'incoming'.
        """
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if spool._state != "open":
            fut.set_exception(StoreError(f"spool {spool.queue_id} is {spool._state}"))
            spool.discard()  # a no-op unless a write failed: then drop it
        elif envelope.queue_id != spool.queue_id:
            fut.set_exception(StoreError("envelope queue_id does not match the spool"))
            spool.discard()
        elif self._closed:
            fut.set_exception(StoreError("queue store is closed"))
            spool.discard()
        else:
            spool._state = "committing"
            state = QueueState.HOLD if hold else QueueState.INCOMING
            self._requests.put(_Request(spool, envelope, fut, state))
        return fut

    def commit(self, spool: SpoolFile, envelope: Envelope, *, hold: bool = False) -> None:
        """Blocking `commit_async`: returns when durable, raises `StoreError`."""
        self.commit_async(spool, envelope, hold=hold).result()

    def stats(self) -> dict[str, int]:
        """Counters: commits (messages), batches (fsync groups = DB transactions),
        failed, max_batch."""
        return dict(self._stats)

    def _spool_finished(self, qid: str) -> None:
        with self._live_lock:
            self._live.discard(qid)

    # --- the committer thread ----------------------------------------------------

    def _committer(self) -> None:
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
            with self._batch_lock, self._flock(shared=True):
                try:
                    self._commit_batch(batch)
                except BaseException as e:  # a bug: never leave a session hanging
                    # Files are left where they are: with a row they will be
                    # delivered (maybe twice: the client saw 451), without one
                    # recover() removes them. Deleting here could lose mail.
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
                self._fail(req, _store_error(f"commit {req.spool.queue_id}", err))
        if ready:
            try:
                if self._fsync:
                    fsync_dir(self._msg)
                self._insert_rows(ready)
            except (OSError, sqlite3.Error) as e:
                err = _store_error("group commit", e)
                for req in ready:
                    self._fail(req, err)
                ready = []
        stats = self._stats
        stats["batches"] += 1
        stats["commits"] += len(ready)
        if len(batch) > stats["max_batch"]:
            stats["max_batch"] = len(batch)
        with self._live_lock:
            self._live.difference_update([req.spool.queue_id for req in ready])
        if ready:
            self.health.succeeded()
        for req in ready:
            req.spool._state = "done"
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
        pool = self._fsync_pool
        if pool is None or len(batch) < _PARALLEL_MIN:
            return [self._persist(req) for req in batch]
        futures = [pool.submit(self._persist, req) for req in batch[1:]]
        return [self._persist(batch[0])] + [f.result() for f in futures]

    def _persist(self, req: _Request) -> OSError | None:
        """Put one spool's content durably at msg/<id>; return the error, if any."""
        # Serialised once, here (in parallel for a batch): the row's column
        # and the preamble of an in-memory spool are the same JSON.
        req.envelope_json = json.dumps(req.envelope.to_dict(), separators=(",", ":"))
        try:
            if req.spool.in_memory:
                self._write_msg(req)
            elif req.spool._prepend:
                self._write_msg_behind_fields(req)
            else:
                self._sync_spilled(req)
                self._link_into_msg(req)
        except OSError as e:
            return e
        return None

    def _write_msg(self, req: _Request) -> None:
        """An in-memory spool: create msg/<id> exclusively, write preamble and
        content in one writev, fsync, close.

        O_EXCL: should two processes ever draw the same ID, the second commit
        fails instead of overwriting the first's content.
        """
        spool = req.spool
        head = msgfile.encode(self._store_id, req.envelope_json.encode())
        fd = os.open(self._msg_prefix + spool.queue_id, _O_MSG, 0o600)
        req.placed = True
        try:
            msgfile.write_all(fd, [head, *spool._prepend, spool._buf])
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        spool._buf = None  # the bytes are on disk; free them now

    def _write_msg_behind_fields(self, req: _Request) -> None:
        """A spilled spool with fields to prepend: msg/<id> is written as for
        an in-memory spool (exclusive create, preamble and fields in one
        write, fsync), the content copied in from tmp/<id> after them; then
        the tmp/ name goes (a leftover one is removed by recover())."""
        spool = req.spool
        try:
            spool._fh.flush()  # an error here (ENOSPC) fails the commit
        finally:
            spool._close_quietly()
        head = msgfile.encode(self._store_id, req.envelope_json.encode())
        fd = os.open(self._msg_prefix + spool.queue_id, _O_MSG, 0o600)
        req.placed = True
        try:
            msgfile.write_all(fd, [head, *spool._prepend])
            src = os.open(spool.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                msgfile.copy_from(src, spool._offset, fd)
            finally:
                os.close(src)
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        _unlink_best_effort(spool.path)

    def _sync_spilled(self, req: _Request) -> None:
        """A spilled spool: flush its buffer, fsync and close tmp/<id>."""
        fh = req.spool._fh
        try:
            fh.flush()
            if self._fsync:
                os.fsync(fh.fileno())
        finally:
            req.spool._close_quietly()

    def _link_into_msg(self, req: _Request) -> None:
        """Give the synced tmp/<id> its msg/<id> name without ever replacing a
        file there (link fails with EEXIST where rename would overwrite), then
        drop the tmp/ name. A crash in between leaves both names and no row:
        recover() removes both."""
        src, dst = req.spool.path, self._msg_prefix + req.spool.queue_id
        try:
            os.link(src, dst)
        except OSError as e:
            if e.errno not in _NO_LINK_ERRNOS:
                raise
            os.rename(src, dst)  # no hard links on this file system
            req.placed = True
            return
        req.placed = True
        _unlink_best_effort(src)  # a leftover tmp/ name is removed by recover()

    def _insert_rows(self, reqs: list[_Request]) -> None:
        db = self._commit_db
        assert db is not None
        now = time.time()
        rows = [
            (r.envelope.queue_id, r.state.value, r.envelope.received_at or now, r.envelope_json)
            for r in reqs
        ]
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO queue (queue_id, state, next_attempt, envelope) VALUES (?, ?, ?, ?)",
                rows,
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _fail(self, req: _Request, err: StoreError) -> None:
        """Rule 3: no half-record. Remove the files this request created:
        its tmp/<id> (if it spilled) and its msg/<id> (only if it made it)."""
        self._stats["failed"] += 1
        spool = req.spool
        spool._close_quietly()
        if not spool.in_memory:
            _unlink_best_effort(spool.path)
        if req.placed:
            _unlink_best_effort(self._msg / spool.queue_id)
        spool._buf = None
        spool._state = "discarded"
        self._spool_finished(spool.queue_id)
        if err.storage_fault:
            self.health.failed(err)  # logs the episode once (queue/health.py)
            log.debug("queue commit failed: queue_id=%s error=%s", spool.queue_id, err)
        else:
            log.error("queue commit failed: queue_id=%s error=%s", spool.queue_id, err)
        req.future.set_exception(err)

    @contextlib.contextmanager
    def _flock(self, *, shared: bool):
        """queue.lock: shared by a committer for one batch, exclusive by
        recover(). The in-process _batch_lock cannot see other processes
        (workers, sendmail) committing to the same queue; this can. Where
        flock() fails (no POSIX, odd file systems) we go on without it."""
        fd, locked = self._lock_fd, False
        if fcntl is not None and fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
                locked = True
            except OSError:
                pass
        try:
            yield
        finally:
            if locked:
                fcntl.flock(fd, fcntl.LOCK_UN)

    # --- manager side ---------------------------------------------------------------

    def recover(self, *, adopt_all: bool = False) -> RecoveryReport:
        """Manager-side, once at start-up: make disk and database agree.

        tmp/ files are deleted (never acknowledged); msg/ files without a row
        are judged by the recovery rules (module doc, queue/recovery.py):
        deleted, rebuilt or quarantined; rows without a file go to
        'corrupt'; 'active' rows become 'incoming' again. `adopt_all`
        (`pigeon queue rebuild`): rebuild every file without a row whatever
        its store id.

        Safe even if SMTP reception already started: spools still being
        written by this process are left alone, and running batches (this
        process's: _batch_lock, other processes': queue.lock) are waited for,
        so a msg/ file whose row is about to be inserted is never judged.
        Spools of other processes that spilled to tmp/ are not protected:
        recovery must still run before other processes receive.
        """
        rep = RecoveryReport()
        adopted: list[Verdict] = []
        with self._batch_lock, self._flock(shared=False), self._live_lock:
            live = set(self._live)
            for p in self._tmp.iterdir():
                if p.name not in live:
                    _unlink_quietly(p)
                    rep.tmp_removed.append(p.name)
            with self._db_lock:
                db = self._manager_db()
                rows = dict(db.execute("SELECT queue_id, state FROM queue").fetchall())
                files = {p.name for p in self._msg.iterdir()}
                quarantine: list[tuple[str, str]] = []
                for name in sorted(files - rows.keys()):
                    verdict = judge_file(
                        self._msg / name, db_store_id=self._store_id, adopt_all=adopt_all
                    )
                    if verdict.action is Action.DELETE:
                        _unlink_quietly(self._msg / name)  # Rule 2: never acknowledged
                        rep.orphans_removed.append(name)
                    elif verdict.action is Action.ADOPT:
                        adopted.append(verdict)
                    elif verdict.action is Action.QUARANTINE:
                        quarantine.append((name, verdict.reason))
                    else:
                        log.warning(
                            "queue recovery: %s: %s; left alone", self._msg / name, verdict.reason
                        )
                        rep.ignored.append(name)
                for qid in sorted(rows.keys() - files):
                    if rows[qid] != "corrupt":
                        rep.missing_content.append(qid)
                rep.reactivated = sorted(q for q, s in rows.items() if s == "active")
                self._recovery_transaction(rep, adopted, quarantine)
                rep.rebuilt = [v.envelope.queue_id for v in adopted]
                rep.quarantined = [q for q, _ in quarantine]
                rep.queued = len(rows) + len(adopted) + len(quarantine)
            # Only now, with the rows durable: the adopted files become files
            # of this database (a crash before this leaves rows, which win).
            self._claim_files(rep.rebuilt)
        if rep.orphans_removed or rep.missing_content or rep.tmp_removed:
            log.warning(
                "queue recovery: tmp_removed=%d orphans_removed=%d corrupt=%s",
                len(rep.tmp_removed),
                len(rep.orphans_removed),
                rep.missing_content,
            )
        for qid in rep.missing_content:
            log.error("queue_id=%s: content file missing, moved to corrupt", qid)
        for qid, reason in quarantine:
            log.error(
                "queue_id=%s: content file without a queue row: %s; quarantined as corrupt "
                "(the file stays in %s)",
                qid,
                reason,
                self._msg,
            )
        if rep.rebuilt:
            log.warning(
                "queue rebuilt %d message(s) from their files: the queue database had "
                "lost track of them (recipients delivered before may get a second copy)",
                len(rep.rebuilt),
            )
        return rep

    def _recovery_transaction(
        self, rep: RecoveryReport, adopted: list[Verdict], quarantine: list[tuple[str, str]]
    ) -> None:
        """recover()'s changes in ONE transaction on the FULL (fsync'ed)
        connection: the committer's, free because recover() holds _batch_lock."""
        db = self._commit_db
        assert db is not None
        now = time.time()
        new_rows = [
            (
                v.envelope.queue_id,
                "incoming",
                v.envelope.received_at or now,
                json.dumps(v.envelope.to_dict(), separators=(",", ":")),
            )
            for v in adopted
        ]
        new_rows += [
            (qid, "corrupt", now, json.dumps({"queue_id": qid, "quarantined": reason}))
            for qid, reason in quarantine
        ]
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "UPDATE queue SET state='corrupt' WHERE queue_id=?",
                [(q,) for q in rep.missing_content],
            )
            db.executemany(
                "UPDATE queue SET state='incoming' WHERE queue_id=? AND state='active'",
                [(q,) for q in rep.reactivated],
            )
            db.executemany(
                "INSERT INTO queue (queue_id, state, next_attempt, envelope) VALUES (?, ?, ?, ?)",
                new_rows,
            )
            db.execute("COMMIT")
        except sqlite3.Error as e:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise _store_error("recover", e) from e

    def _claim_files(self, queue_ids: list[str]) -> None:
        """Write this database's store id into the preamble of adopted files
        (in parallel: each is one pwrite and one fsync). A file that cannot
        be rewritten keeps its row; it is only logged."""

        def claim(qid: str) -> None:
            try:
                msgfile.rewrite_store_id(self._msg / qid, self._store_id, fsync=self._fsync)
            except OSError as e:
                log.error("queue_id=%s: cannot record the store id in its file: %s", qid, e)

        pool = self._fsync_pool
        if pool is None or len(queue_ids) < _PARALLEL_MIN:
            for qid in queue_ids:
                claim(qid)
        else:
            list(pool.map(claim, queue_ids))

    def due(self, now: float, limit: int = 100) -> list[str]:
        """Manager-side: up to `limit` ids due at `now` (next_attempt <= now).

        Fair between new and old mail (schedule.split_slots, Postfix qmgr):
        up to half from 'incoming', half from 'deferred', slots one state
        cannot use go to the other; each state oldest-first, the two
        interleaved. Each state is one index range search on
        queue_due (state, next_attempt) reading at most `limit` rows: the
        cost is O(log n + limit) however big the deferred backlog is.
        """
        if limit <= 0:
            return []
        with self._db_lock:
            db = self._manager_db()
            inc = [r[0] for r in db.execute(DUE_SQL, ("incoming", now, limit))]
            dfr = [r[0] for r in db.execute(DUE_SQL, ("deferred", now, limit))]
        n_in, n_def = split_slots(limit, len(inc), len(dfr))
        inc, dfr = inc[:n_in], dfr[:n_def]
        out: list[str] = []
        for i in range(max(len(inc), len(dfr))):
            out.extend(inc[i : i + 1])
            out.extend(dfr[i : i + 1])
        return out

    def next_due(self) -> float | None:
        """Manager-side: the earliest next_attempt of incoming/deferred rows.

        Two MIN() queries, each answered from the index in O(log n).
        """
        with self._db_lock:
            db = self._manager_db()
            times = [
                db.execute(NEXT_DUE_SQL, (state,)).fetchone()[0]
                for state in ("incoming", "deferred")
            ]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def next_retry(self) -> float | None:
        """Manager-side: the earliest next_attempt of a 'deferred' row (None: none),
        from the queue_due index in O(log n). The manager's retry timer: unlike
        next_due() it ignores 'incoming' rows, which it learns of from
        submit()/nudge()."""
        with self._db_lock:
            return self._manager_db().execute(NEXT_DUE_SQL, ("deferred",)).fetchone()[0]

    def load(self, queue_id: str) -> Envelope:
        """Manager-side: the envelope. Unreadable -> 'corrupt' + `CorruptEntry`."""
        with self._db_lock:
            row = (
                self._manager_db()
                .execute("SELECT envelope FROM queue WHERE queue_id=?", (queue_id,))
                .fetchone()
            )
        if row is None:
            raise StoreError(f"no such queue entry: {queue_id}")
        try:
            env = Envelope.from_dict(json.loads(row[0]))
        except (ValueError, KeyError, TypeError) as e:
            self._quarantine(queue_id, f"unreadable envelope: {e!r}")
            raise CorruptEntry(f"{queue_id}: unreadable envelope") from e
        if not self.content_path(queue_id).exists():
            self._quarantine(queue_id, "content file missing")
            raise CorruptEntry(f"{queue_id}: content file missing")
        return env

    def content_path(self, queue_id: str) -> Path:
        """Path of the committed content file (read-only for everyone). It
        begins with a preamble: read the message with `open_content()` or
        msgfile.open_message(path), never with plain open()."""
        return self._msg / queue_id

    def open_content(self, queue_id: str) -> tuple[BinaryIO, int]:
        """The committed message: (file positioned on its first octet, its
        length). OSError as open() raises it (EBADMSG: damaged preamble)."""
        return msgfile.open_message(self._msg / queue_id)

    def content(self, queue_id: str) -> FileContent:
        """The committed message as a `MessageContent` (queue/api.py)."""
        return FileContent(self._msg / queue_id)

    def probe(self) -> None:
        """Manager-side (queue/api.py): a probe file written, synced and removed
        in tmp/, the storage of the content files (StoreError when it fails)."""
        try:
            write_probe(self._tmp, self._fsync)
        except OSError as exc:
            raise _store_error("storage probe", exc) from None

    def claim(
        self, queue_ids: Sequence[str], from_states: Iterable[str] = ("incoming",)
    ) -> list[str]:
        """Manager-side: mark 'active' those of `queue_ids` now in one of
        `from_states`, in one transaction; the ids claimed (queue/api.py)."""
        return self.move(list(queue_ids), "active", from_states=tuple(from_states))

    def set_state(self, queue_id: str, state: str, next_attempt: float | None = None) -> None:
        """Manager-side: move an entry to `state` (and optionally reschedule it)."""
        if state not in STATES:
            raise ValueError(f"unknown queue state {state!r}")
        if next_attempt is None:
            self._write("UPDATE queue SET state=? WHERE queue_id=?", (state, queue_id))
        else:
            self._write(
                "UPDATE queue SET state=?, next_attempt=? WHERE queue_id=?",
                (state, next_attempt, queue_id),
            )

    def mark_active(self, queue_ids: list[str]) -> None:
        """Manager-side: set many entries 'active' in one transaction.

        Deliberately not fsync'ed per entry beyond SQLite's commit: losing this
        change in a crash is harmless, recover() resets 'active' anyway.
        """
        with self._db_lock:
            db = self._manager_db()
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "UPDATE queue SET state='active' WHERE queue_id=?", [(q,) for q in queue_ids]
                )
                db.execute("COMMIT")
            except sqlite3.Error as e:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise _store_error("mark active", e) from e

    def update(self, envelope: Envelope, state: str, next_attempt: float) -> None:
        """Manager-side: store new recipient statuses, state and schedule durably."""
        if state not in STATES:
            raise ValueError(f"unknown queue state {state!r}")
        self._write(
            "UPDATE queue SET envelope=?, state=?, next_attempt=? WHERE queue_id=?",
            (
                json.dumps(envelope.to_dict(), separators=(",", ":")),
                state,
                next_attempt,
                envelope.queue_id,
            ),
        )

    def remove(self, queue_id: str) -> None:
        """Manager-side: delete the row (durably), then the file (Rule 4)."""
        self._write("DELETE FROM queue WHERE queue_id=?", (queue_id,))
        _unlink_quietly(self._msg / queue_id)

    def remove_many(self, queue_ids: list[str]) -> None:
        """Manager-side: `remove()` for many entries: every row is deleted in
        ONE transaction (one commit instead of one per message), then the
        files are unlinked (Rule 4: a crash in between leaves files without
        rows, which recover() removes). Ids without a row are ignored. On a
        database error nothing is deleted and `StoreError` is raised."""
        if not queue_ids:
            return
        with self._db_lock:
            db = self._manager_db()
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("DELETE FROM queue WHERE queue_id=?", [(q,) for q in queue_ids])
                db.execute("COMMIT")
            except sqlite3.Error as e:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise _store_error("queue remove", e) from e
        for qid in queue_ids:
            _unlink_quietly(self._msg / qid)

    def counts(self) -> dict[str, int]:
        """Number of entries per state (every state present, zeros included)."""
        with self._db_lock:
            rows = (
                self._manager_db()
                .execute("SELECT state, COUNT(*) FROM queue GROUP BY state")
                .fetchall()
            )
        out = dict.fromkeys(STATES, 0)
        out.update(rows)
        return out

    def list(self, state: str | None = None) -> list[QueueEntry]:
        """Entries (optionally of one state) ordered by queue ID, i.e. arrival."""
        sql = "SELECT queue_id, state, next_attempt, envelope FROM queue"
        args: tuple = ()
        if state is not None:
            sql, args = sql + " WHERE state=?", (state,)
        with self._db_lock:
            rows = self._manager_db().execute(sql + " ORDER BY queue_id", args).fetchall()
        return [QueueEntry(qid, st, na, _envelope_or_none(raw)) for qid, st, na, raw in rows]

    # --- queries and bulk moves for the operator (pigeon.admin) -------------------

    def entry(self, queue_id: str) -> QueueEntry | None:
        """One entry as `list()` shows it, or None when there is no such row."""
        with self._db_lock:
            row = (
                self._manager_db()
                .execute(
                    "SELECT queue_id, state, next_attempt, envelope FROM queue WHERE queue_id=?",
                    (queue_id,),
                )
                .fetchone()
            )
        if row is None:
            return None
        return QueueEntry(row[0], row[1], row[2], _envelope_or_none(row[3]))

    def states(self, queue_ids: list[str]) -> dict[str, str]:
        """queue_id -> state for those of `queue_ids` that exist."""
        out: dict[str, str] = {}
        with self._db_lock:
            db = self._manager_db()
            for qid in queue_ids:
                row = db.execute("SELECT state FROM queue WHERE queue_id=?", (qid,)).fetchone()
                if row is not None:
                    out[qid] = row[0]
        return out

    def move(
        self,
        queue_ids: list[str],
        state: str,
        next_attempt: float | None = None,
        *,
        from_states: tuple[str, ...],
    ) -> list[str]:
        """Manager-side: move the entries now in one of `from_states` to `state`
        (and reschedule them when `next_attempt` is given), in ONE transaction.

        Returns the ids that moved; others (missing, or in another state) are
        left alone. The state test is in the UPDATE itself, so an entry the
        manager marked 'active' meanwhile is never snatched from a delivery.
        """
        if state not in STATES or not set(from_states) <= set(STATES):
            raise ValueError(f"unknown queue state in {state!r} / {from_states!r}")
        marks = ",".join("?" * len(from_states))
        if next_attempt is None:
            sql, head = (
                f"UPDATE queue SET state=? WHERE queue_id=? AND state IN ({marks})",
                (state,),
            )
        else:
            sql = (
                f"UPDATE queue SET state=?, next_attempt=? WHERE queue_id=? AND state IN ({marks})"
            )
            head = (state, next_attempt)
        moved: list[str] = []
        with self._db_lock:
            db = self._manager_db()
            try:
                db.execute("BEGIN IMMEDIATE")
                for qid in queue_ids:
                    if db.execute(sql, (*head, qid, *from_states)).rowcount:
                        moved.append(qid)
                db.execute("COMMIT")
            except sqlite3.Error as e:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise _store_error("queue move", e) from e
        return moved

    def _quarantine(self, queue_id: str, reason: str) -> None:
        log.error("queue_id=%s: %s; moved to corrupt", queue_id, reason)
        self._write("UPDATE queue SET state='corrupt' WHERE queue_id=?", (queue_id,))

    def _manager_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("queue store is not open")
        return self._db

    def _write(self, sql: str, args: tuple) -> None:
        with self._db_lock:
            try:
                self._manager_db().execute(sql, args)  # autocommit: one durable txn
            except sqlite3.Error as e:
                raise _store_error("queue update", e) from e


def _envelope_or_none(raw: str) -> Envelope | None:
    try:
        return Envelope.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        return None


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _unlink_best_effort(path: Path | str) -> None:
    """Cleanup after a failure must not fail in turn: a file left behind has
    no row, so recover() removes it at the next start."""
    try:
        os.unlink(path)
    except OSError:
        pass


class FileContent:
    """`MessageContent` (queue/api.py) of a content file in msg/: the message
    after its preamble (pigeon/msgfile.py)."""

    __slots__ = ("path", "_size")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._size: int | None = None

    @property
    def size(self) -> int:
        if self._size is None:
            fh, self._size = self._open()
            fh.close()
        return self._size

    def open(self) -> BinaryIO:
        fh, self._size = self._open()
        return fh

    def _open(self) -> tuple[BinaryIO, int]:
        try:
            # Unbuffered: every reader takes big chunks (the Maildir copy, the
            # SMTP client), and a buffered open asks isatty() (an ioctl) per file.
            return msgfile.open_message(self.path, buffering=0)
        except OSError as exc:
            raise _store_error(f"content {self.path.name}", exc) from None
