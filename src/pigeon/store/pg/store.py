"""PgQueueStore: the queue (pigeon/queue/api.py) in a PostgreSQL database shared by nodes.

Contract:
  * `PgQueueStore(dsn, node=..., spool_dir=...)` is a `QueueBackend`: the
    embedded store's promises (pigeon/queue/store.py) over one PostgreSQL
    database that several pigeon nodes share (issue 17). Its parts:

      spool.py      PgSpool: a message being received (memory, then an
                    unnamed temporary file in `spool_dir`)
      committer.py  group commit: many messages per transaction, the
                    future resolves after COMMIT; NOTIFY wakes other nodes
      content.py    PgContent: content streamed back chunk by chunk
      manager.py    due, claims with leases (FOR UPDATE SKIP LOCKED),
                    changes, removal, the read-only queries
      db.py         the connection pool, psycopg errors as StoreErrors
      migrate.py    the schema's versions (`pigeon db migrate`/`check`)

  * Durability: a commit is acknowledged after PostgreSQL's COMMIT of the
    entry row and every content row (synchronous_commit on, the server's
    default: CONTRIBUTING.md, rule 9); the manager's changes are committed
    before their call returns. A node that dies loses nothing acknowledged:
    the database has it all; its claims come back when it recovers or when
    their leases expire (manager.py).
  * `open()` connects and refuses (StoreError naming `pigeon db migrate`)
    a database whose schema this code cannot use (migrate.incompatibility);
    with `migrate=True` it first applies the missing migrations itself
    (tests, and a single node that owns its database).
  * `wait_for_mail(timeout)`: LISTEN/NOTIFY on committer.CHANNEL; returns
    True when some node committed new mail since the last call, False
    after `timeout` seconds: an idle node's manager sleeps in it instead of
    polling (a dedicated connection, opened on first use).
  * Queue IDs come from pigeon/queue/spool.py's generator (the process
    tail tells nodes apart too); the primary key makes a clash fail that
    one commit, never overwrite (committer.py).
  * `space` watches the local spool directory, `health` is told by the
    committer and by `probe()` (a committed transaction with an xid: a WAL
    flush on the server).
"""

from __future__ import annotations

import concurrent.futures
import tempfile
import threading
from pathlib import Path
from typing import Any

from pigeon.queue.api import Spool
from pigeon.queue.health import StorageHealth
from pigeon.queue.model import Envelope
from pigeon.queue.space import FreeSpace
from pigeon.queue.spool import NEW_ID
from pigeon.store.pg import migrate as schema
from pigeon.store.pg.committer import CHANNEL, Committer
from pigeon.store.pg.content import PgContent
from pigeon.store.pg.db import Pool, store_error
from pigeon.store.pg.manager import DEFAULT_LEASE, ManagerSide
from pigeon.store.pg.spool import PgSpool
from pigeon.vocab.errors import StoreError

__all__ = ["PgQueueStore", "is_postgres_url"]


def is_postgres_url(value: str) -> bool:
    """Does `--store` name a PostgreSQL database (rather than the embedded store)?"""
    return value.startswith(("postgresql://", "postgres://"))


class PgQueueStore(ManagerSide):
    def __init__(
        self,
        dsn: str,
        *,
        node: str = "local",
        spool_dir: Path | str | None = None,
        pool_size: int = 8,
        lease: float = DEFAULT_LEASE,
        migrate: bool = False,
    ) -> None:
        self.dsn = dsn
        self._node = node
        self.lease = lease
        self._spool_dir = Path(spool_dir or tempfile.gettempdir())
        self._pool_size = pool_size
        self._migrate = migrate
        self._pool: Pool = Pool(dsn, size=pool_size, application_name=f"pigeon {node}")
        self._pool.close()  # not open yet: every call says so
        self._committer: Committer | None = None
        self._health = StorageHealth("queue")
        self._space = FreeSpace(self._spool_dir)
        self._listen: Any = None
        self._listen_lock = threading.Lock()

    # --- lifetime -----------------------------------------------------------------

    def open(self, *, owner: bool = False, verify: bool | None = None) -> None:
        """`owner` and `verify` are the embedded store's (a data directory's lock
        and integrity check); a shared database has neither: accepted, unused."""
        import psycopg

        if self._committer is not None:
            return
        try:
            self._spool_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise store_error("queue open: spool directory", e) from e
        pool = Pool(self.dsn, size=self._pool_size, application_name=f"pigeon {self._node}")
        try:
            with pool.conn("queue open") as conn:
                problem = schema.open_check(conn, apply=self._migrate)
        except (StoreError, psycopg.Error) as e:
            pool.close()
            raise store_error("queue open", e) from e
        if problem:
            pool.close()
            raise StoreError(f"queue open: {problem}")
        self._pool = pool
        self._committer = Committer(pool, self._health)

    def take_ownership(self) -> None:
        """The embedded store's hand-over after `pigeon restart`: nothing to take here."""

    def close(self) -> None:
        committer, self._committer = self._committer, None
        if committer is not None:
            committer.close()
        self._pool.close()
        with self._listen_lock:
            if self._listen is not None:
                self._listen.close()
                self._listen = None

    def __enter__(self) -> PgQueueStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- Intake ---------------------------------------------------------------------

    def new_spool(self, envelope: Envelope | None = None) -> PgSpool:
        if self._committer is None:
            raise StoreError("new spool: store not open")
        spool = PgSpool(NEW_ID.next(), self._spool_dir, envelope)
        if envelope is not None:
            envelope.queue_id = spool.queue_id
        return spool

    def commit_async(
        self, spool: Spool, envelope: Envelope, *, hold: bool = False
    ) -> concurrent.futures.Future[None]:
        committer = self._committer
        if committer is None:
            fut: concurrent.futures.Future[None] = concurrent.futures.Future()
            fut.set_exception(StoreError(f"queue_id={spool.queue_id} commit: store not open"))
            spool.discard()
            return fut
        return committer.submit(spool, envelope, hold)

    def commit(self, spool: Spool, envelope: Envelope, *, hold: bool = False) -> None:
        self.commit_async(spool, envelope, hold=hold).result()

    def content(self, queue_id: str) -> PgContent:
        return PgContent(self._pool, queue_id)

    # --- LISTEN/NOTIFY ----------------------------------------------------------------

    def wait_for_mail(self, timeout: float) -> bool:
        """True when a node committed new mail (see the contract); from a worker thread."""
        import psycopg

        with self._listen_lock:
            if self._committer is None:
                raise StoreError("queue listen: store not open")
            try:
                if self._listen is None:
                    self._listen = self._pool.connect(autocommit=True)
                    self._listen.execute(f"LISTEN {CHANNEL}")
                got = False
                for _ in self._listen.notifies(timeout=timeout, stop_after=1):
                    got = True
                # Drain what else arrived: one wake-up per burst is enough.
                for _ in self._listen.notifies(timeout=0):
                    pass
                return got
            except psycopg.Error as e:
                if self._listen is not None:
                    self._listen.close()
                    self._listen = None
                raise store_error("queue listen", e) from e

    # --- StorageStatus ---------------------------------------------------------------

    @property
    def health(self) -> StorageHealth:
        return self._health

    @property
    def space(self) -> FreeSpace:
        return self._space

    def probe(self) -> None:
        try:
            with self._pool.conn("queue probe") as conn:
                with conn.transaction():
                    conn.execute("SELECT txid_current()")  # an xid: COMMIT flushes WAL
        except StoreError as e:
            if e.storage_fault:
                self._health.failed(e)
            raise
        self._health.succeeded()

    def stats(self) -> dict[str, int]:
        if self._committer is None:
            return {"commits": 0, "batches": 0, "failed": 0, "max_batch": 0}
        return dict(self._committer.stats)
