"""The durable queue: message files plus envelope rows in SQLite, with group commit.

Product promise: a 250 after DATA/BDAT means the content *and* its envelope
are on stable storage (CONTRIBUTING.md, rule 9). `QueueStore` is the
embedded backend of the queue interfaces (queue/api.py, `QueueBackend`);
it composes one part per concern:

    spool.py     Spools, SpoolFile, queue IDs        the SMTP side (Intake)
    commit.py    Committer: group commit             Rules 1 and 3
    recovery.py  recover(): disk and database agree  Rules 2 and 5
    state.py     QueueStateDb: due, claims, changes  the manager; Rule 4
    queries.py   QueueQueriesDb: counts, listings    operators, status
    files.py     ContentFiles, FileContent           content as streams
    dbfile.py    connection, transaction(), locks    queue.db itself
    schema.py    tables, store id, format version    queue.db's format
    health.py, space.py                              StorageStatus

On-disk layout under `root` (config.queue_dir)::

    tmp/<id>     spool spilled to disk (over spool.SPILL_THRESHOLD)
    msg/<id>     content: a preamble (the envelope and the store id, see
                 pigeon/msgfile.py), then the raw message, CRLF, our Received:
                 on top. Committed only once its row exists; a file without
                 a row is judged by the recovery rules (queue/recovery.py)
    queue.db     SQLite, WAL; new messages committed with synchronous=FULL,
                 the manager's changes with NORMAL (queue/state.py); a row per
                 message (queue_id, state, next_attempt, envelope JSON); meta:
                 store id, format version; claims of other nodes (schema.py)
    queue.lock   flock()ed: shared by every process's committer during a
                 batch, exclusive by recover() (so recovery in one process
                 never deletes a file another process is about to commit)
    owner.lock   flock()ed for the owner's life: shared by `pigeon serve`
                 (open(owner=True), or take_ownership() after `pigeon restart`),
                 exclusive by `pigeon queue rebuild` (queue/rebuild.py)

States (pigeon.vocab.QueueState): 'incoming' (new, due now), 'active' (a
delivery is running), 'deferred' (waiting for next_attempt), 'hold'
(operator), 'corrupt' (quarantined: unreadable envelope, missing content, or
a content file that recovery could neither rebuild nor prove unacknowledged;
never deleted by us).

The crash-safety rules, each kept where it is enforced:
  Rule 1: a row exists only if its content file is durable (commit.py).
  Rule 2: a content file without a row whose preamble carries THIS
          database's store id was never acknowledged: recovery deletes it;
          so is every tmp/ file (recovery.py).
  Rule 3: no half-records: a failed commit leaves no file and no row
          (commit.py).
  Rule 4: removal deletes the row first, then the file (a crash in between
          leaves a file without a row: Rule 2 cleans it up) (state.py).
  Rule 5: content is never deleted because the database lost track of it:
          a file of another store id is adopted, one that cannot be rebuilt
          quarantined (recovery.py, with the decision table). A missing or
          empty queue.db is therefore rebuilt automatically at start-up; a
          damaged one (not a database, malformed, failing `PRAGMA
          quick_check` when the owner opens it) is refused with one line
          naming the file and `pigeon queue rebuild --from-files`
          (dbfile.StoreCorrupt).

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
them and operators can read them (`head -2` shows the preamble); everyone
outside the store reads them through `content(queue_id)` (files.py).

Threading (queue/api.py): `new_spool`, `SpoolFile.*`, `commit_async`,
`commit`, `stats`, `health` and `space` are safe from any thread (the SMTP
side runs them on the event loop; they never block on disk sync; only a
spool passing the spill threshold touches the file system). Everything else
blocks on SQLite or fsync: the queue manager (the single owner of queue
state) and operators run it via `asyncio.to_thread`, never from an event
loop of an SMTP server.

Failure modes: every error is a `StoreError` (queue/api.py): disk full / I/O
errors during commit on the future (`.storage_fault` set; `health` logs the
episode once); a corrupt or unreadable envelope, or missing content -> the
row moves to 'corrupt' with a log line on "pigeon.queue" and `CorruptEntry`;
a damaged queue.db -> `StoreCorrupt` from open(); a queue.db of a newer
format -> `QueueFormatError` from open() (queue/schema.py); the owner lock held by
another process -> `StoreBusy` from open(). One exception: open() lets the
OSError of a data directory it cannot create or enter through (a
PermissionError is the operator's to fix; the CLI maps it to its exit
status). `fsync=False` skips every fsync and sets SQLite synchronous=OFF:
for tests and benchmarks only; it breaks the durability promise.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import logging
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pigeon.fsutil import ensure_file, write_probe
from pigeon.queue import recovery
from pigeon.queue.api import QueueBackend, QueueEntry, RecoveryReport, Spool
from pigeon.queue.commit import Committer
from pigeon.queue.dbfile import (
    BatchLock,
    Db,
    DbState,
    StoreBusy,
    StoreCorrupt,
    connect,
    is_corruption,
    lock_owner,
    prepare,
)
from pigeon.queue.files import ContentFiles, Disk, FileContent
from pigeon.queue.health import StorageHealth, store_error
from pigeon.queue.model import Envelope
from pigeon.queue.queries import QueueQueriesDb
from pigeon.queue.schema import QUEUE
from pigeon.queue.space import FreeSpace
from pigeon.queue.spool import SpoolFile, Spools
from pigeon.queue.state import HOME_NODE, QueueStateDb
from pigeon.vocab.errors import CorruptEntry, StoreError
from pigeon.vocab.states import STATES, QueueState

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


class _Closes(Protocol):
    def close(self) -> None: ...


class _Parts:
    """What open() builds; gone again after close()."""

    __slots__ = ("spools", "committer", "state", "queries", "manager_db", "held")

    def __init__(
        self,
        spools: Spools,
        committer: Committer,
        state: QueueStateDb,
        queries: QueueQueriesDb,
        manager_db: Db,
        held: list[_Closes],
    ) -> None:
        self.spools = spools
        self.committer = committer
        self.state = state
        self.queries = queries
        self.manager_db = manager_db
        self.held = held  # connections and lock files, closed by close()


class QueueStore:
    """Message files + SQLite rows behind the queue interfaces (module doc).

    `node`: the node whose claims this store makes and recovers
    (queue/state.py, "Claims"); every process of one queue is on the home
    node, so only the conformance suite and a future shared backend name
    another. `disk`: the write path's system calls (files.Disk), a seam
    for tests.
    """

    def __init__(
        self,
        root: Path,
        *,
        fsync: bool = True,
        node: str = HOME_NODE,
        disk: Disk | None = None,
    ) -> None:
        self.root = Path(root)
        self._fsync = fsync
        self._node = node
        self._disk = disk or Disk()
        self._files = ContentFiles(self.root / "msg")
        self._parts: _Parts | None = None
        self._committer: Committer | None = None  # kept after close: it refuses commits
        self._store_id = ""  # queue.db's, see dbfile.py
        #: What open() found: was queue.db created (missing, empty) or upgraded?
        #: (queue/schema.py, DbState)
        self.db_state: DbState | None = None
        # Storage faults seen by the committer and the manager (queue/health.py),
        # and the free-space reserve the SMTP side checks (queue/space.py).
        self._health = StorageHealth("queue")
        self._space = FreeSpace(self.root)

    # --- lifetime -----------------------------------------------------------------

    def open(self, *, owner: bool = False, verify: bool | None = None) -> None:
        """Create directories and the database, start the committer thread.

        `owner=True` (the serving pigeon, whose queue manager owns the
        queue): hold owner.lock shared while open, so `pigeon queue rebuild`
        refuses to run meanwhile (`StoreBusy` if a rebuild holds it now),
        and upgrade a queue.db of an older format in place, with one INFO
        line (queue/schema.py). A newer format is refused by every open
        (`QueueFormatError`, one line naming the file and both versions).
        `verify` (default: `owner`) runs `PRAGMA quick_check`. A damaged
        database raises `StoreCorrupt`, other failures `StoreError`; on
        failure nothing stays open.
        """
        if self._parts is not None:
            return
        self.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # data_dir
        tmp = self.root / "tmp"
        for d in (self.root, tmp, self._files.directory):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        db_path = self.root / "queue.db"
        # SQLite would create it 0644 & ~umask; its -wal/-shm copy its mode.
        ensure_file(db_path, 0o600)
        held: list[_Closes] = []  # what to release on failure, and at close()
        try:
            if owner:
                held.append(_Fd(lock_owner(self.root, exclusive=False)))
            batch_lock = BatchLock(self.root / "queue.lock")
            held.append(batch_lock)
            commit_conn = self._connect(db_path, "FULL", held)
            state = prepare(
                commit_conn, db_path, verify=owner if verify is None else verify, owner=owner
            )
            held[-1] = manager_db = Db(self._connect(db_path, "NORMAL", held))  # see Db.close
        except BaseException:
            _release(held)
            raise
        self._store_id = state.store_id
        self._opened(state)
        if state.created and self._files.names():
            log.warning(
                "queue database %s was missing or empty: created a new one; the queue "
                "is rebuilt from the files in %s",
                db_path,
                self._files.directory,
            )
        spools = Spools(tmp, state.store_id, self._disk)
        committer = Committer(
            files=self._files,
            spools=spools,
            conn=commit_conn,
            store_id=state.store_id,
            lock=batch_lock,
            health=self._health,
            fsync=self._fsync,
        )
        self._parts = _Parts(
            spools,
            committer,
            QueueStateDb(manager_db, self._files, self._node),
            QueueQueriesDb(manager_db),
            manager_db,
            held,
        )
        self._committer = committer
        committer.start()

    def take_ownership(self) -> None:
        """Become the queue's owner while open, as open(owner=True) would have
        made us: a process started by `pigeon restart` opens the store as a
        worker does, accepts mail, and takes the queue once its predecessor
        has ended (app/datalock.py). Holds owner.lock shared, checks queue.db
        (`PRAGMA quick_check`) and upgrades an older format (a restart into a
        newer release); `StoreBusy`, `StoreCorrupt` as open() raises them."""
        parts = self._open()
        fd = lock_owner(self.root, exclusive=False)
        try:
            with parts.manager_db.lock:
                db = parts.manager_db.conn
                state = prepare(db, self.root / "queue.db", verify=True, owner=True)
        except BaseException:
            os.close(fd)
            raise
        parts.held.insert(0, _Fd(fd))  # released last, as open() orders it
        self._opened(state)

    def _opened(self, state: DbState) -> None:
        self.db_state = state
        if state.upgraded_from is not None:
            log.info("%s", QUEUE.upgraded_line(self.root / "queue.db", state.upgraded_from))

    def _connect(self, db_path: Path, durable: str, held: list[_Closes]) -> sqlite3.Connection:
        try:
            conn = connect(db_path, synchronous=durable if self._fsync else "OFF")
        except sqlite3.Error as e:
            if is_corruption(e):
                raise StoreCorrupt(db_path, str(e)) from None
            raise store_error(f"queue database {db_path}", e) from None
        held.append(conn)
        return conn

    def close(self) -> None:
        """Finish pending commits, stop the committer, close the database."""
        parts, self._parts = self._parts, None
        if parts is None:
            return
        parts.committer.stop()
        _release(parts.held)

    def __enter__(self) -> QueueStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> _Parts:
        parts = self._parts
        if parts is None:
            raise StoreError("queue store is not open")
        return parts

    @property
    def store_id(self) -> str:
        """The id of the open queue.db, written into every content file."""
        return self._store_id

    # --- Intake (the SMTP side) ---------------------------------------------------

    def new_spool(self, envelope: Envelope | None = None) -> SpoolFile:
        """Allocate a queue ID and an empty spool (in memory: no system call).

        `envelope`: the envelope as known now (sender, recipients, params,
        client; its queue_id is set to the spool's). Should the spool spill
        to disk, its file begins with this envelope (msgfile.FLAG_DRAFT), so
        the message can be rebuilt if the database loses track of it. It
        can also be set later as `spool.envelope`, before the content is
        written. A spool held in memory gets the committed envelope instead.
        """
        parts = self._parts
        if parts is None:
            raise StoreError("queue store is closed")
        return parts.spools.new(envelope)

    def commit_async(
        self, spool: Spool, envelope: Envelope, *, hold: bool = False
    ) -> concurrent.futures.Future[None]:
        """Queue `spool` + `envelope` for the next group commit (commit.py).

        The future resolves to None once content and row are durable, or to a
        `StoreError`. `envelope.queue_id` must equal `spool.queue_id`.
        `hold`: the entry starts in 'hold' (a quarantined message: accepted,
        delivered only once an operator releases it) instead of 'incoming'.
        """
        committer = self._committer
        if committer is None or not isinstance(spool, SpoolFile):
            fut: concurrent.futures.Future[None] = concurrent.futures.Future()
            fut.set_exception(
                StoreError("queue store is closed" if committer is None else "not our spool")
            )
            spool.discard()
            return fut
        return committer.submit(spool, envelope, hold=hold)

    def commit(self, spool: Spool, envelope: Envelope, *, hold: bool = False) -> None:
        """Blocking `commit_async`: returns when durable, raises `StoreError`."""
        self.commit_async(spool, envelope, hold=hold).result()

    # --- ContentStore -------------------------------------------------------------

    def content(self, queue_id: str) -> FileContent:
        """The committed message as a `MessageContent` (files.py)."""
        return self._files.content(queue_id)

    # --- QueueStateStore (the queue manager) ----------------------------------------

    @property
    def node(self) -> str:
        return self._node

    def recover(self, *, adopt_all: bool = False) -> RecoveryReport:
        """Once at start-up: make disk and database agree (recovery.py).
        `adopt_all` (`pigeon queue rebuild`): rebuild every file without a
        row whatever its store id."""
        parts = self._open()
        return recovery.recover(
            committer=parts.committer,
            manager_db=parts.manager_db,
            files=self._files,
            spools=parts.spools,
            store_id=self._store_id,
            node=self._node,
            fsync=self._fsync,
            adopt_all=adopt_all,
        )

    def due(self, now: float, limit: int = 100) -> builtins.list[str]:
        return self._open().state.due(now, limit)

    def next_retry(self) -> float | None:
        return self._open().state.next_retry()

    def claim(
        self,
        queue_ids: Sequence[str],
        from_states: Iterable[QueueState] = (QueueState.INCOMING,),
    ) -> builtins.list[str]:
        return self._open().state.claim(queue_ids, from_states)

    def load(self, queue_id: str) -> Envelope:
        return self._open().state.load(queue_id)

    def update(self, envelope: Envelope, state: QueueState, next_attempt: float) -> None:
        self._open().state.update(envelope, state, next_attempt)

    def move(
        self,
        queue_ids: Sequence[str],
        state: QueueState,
        next_attempt: float | None = None,
        *,
        from_states: Iterable[QueueState],
    ) -> builtins.list[str]:
        return self._open().state.move(queue_ids, state, next_attempt, from_states=from_states)

    def remove_many(self, queue_ids: Sequence[str]) -> None:
        self._open().state.remove_many(queue_ids)

    # --- QueueQueries ---------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return self._open().queries.counts()

    def list(self, state: QueueState | None = None) -> builtins.list[QueueEntry]:
        return self._open().queries.list(state)

    def entry(self, queue_id: str) -> QueueEntry | None:
        return self._open().queries.entry(queue_id)

    def states(self, queue_ids: Sequence[str]) -> dict[str, QueueState]:
        return self._open().queries.states(queue_ids)

    # --- StorageStatus ----------------------------------------------------------------

    @property
    def health(self) -> StorageHealth:
        return self._health

    @property
    def space(self) -> FreeSpace:
        return self._space

    def probe(self) -> None:
        """Write, fsync and remove a probe file in tmp/, next to the content
        (fsutil.write_probe: big enough not to fit in space already held)."""
        try:
            write_probe(self.root / "tmp", self._fsync)
        except OSError as exc:
            raise store_error("storage probe", exc) from exc
        self._health.succeeded()

    def stats(self) -> dict[str, int]:
        """Counters: commits (messages), batches (fsync groups = DB transactions),
        failed, max_batch."""
        committer = self._committer
        if committer is None:
            return {"commits": 0, "batches": 0, "failed": 0, "max_batch": 0}
        return dict(committer.stats)


class _Fd:
    """A file descriptor to close with the store (owner.lock)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        os.close(self.fd)


def _release(held: builtins.list[_Closes]) -> None:
    """Close what open() acquired, last first (connections, then locks)."""
    for thing in reversed(held):
        thing.close()
    held.clear()


if TYPE_CHECKING:  # mypy proves the store has every face of queue/api.py
    _A_BACKEND: type[QueueBackend] = QueueStore
