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
      slots.py      per-destination delivery slots across the cluster
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
  * `destination_slots()`: the cluster-wide per-destination delivery
    slots (slots.py: advisory locks on a connection of their own), closed
    with the store.
  * `wait_for_mail(timeout)`: LISTEN/NOTIFY on committer.CHANNEL; returns
    True when another node committed new mail since the last call, False
    after `timeout` seconds: an idle node's manager sleeps in it instead of
    polling (a dedicated connection, opened on first use). An idle node is
    woken at once; a busy one at most once per WAKE_GAP seconds (the
    notifications in between are taken together): under load every node
    commits many batches a second, and a scan per batch on every other
    node costs more round trips than the mail (docs/benchmarks.md,
    "Cluster on PostgreSQL"). A process's own commits are not news
    (the payload names node and process): its manager starts that mail.
    `wait_for_events(timeout)` returns the notifications themselves, those
    of ADMIN_CHANNEL too: what `tell_nodes(message)` sends every node (an
    operator's flush, app/clusterwake.py).
  * Queue IDs are pigeon/queue/spool.py's 15 characters (time, counter,
    process tail) followed by this node's `node_id` (nodes.id_tail: 2
    characters for the first 1024 node names), so two nodes never make
    the same ID; the primary key would still make a clash fail that one
    commit, never overwrite (committer.py).
  * Nodes (nodes.py): `open(owner=True)` (`pigeon serve`) registers this
    process as the node `node` and refuses (`NodeNameInUse`) a name that
    another live process runs under; a heartbeat thread refreshes the row
    every nodes.HEARTBEAT seconds until `close()`, which marks it stopped.
    `take_ownership()` (the successor of `pigeon restart`) takes the name
    over. `nodes()` lists every node with its state, for status and
    metrics.
  * `space` watches the local spool directory, `health` is told by the
    committer and by `probe()` (a committed transaction with an xid: a WAL
    flush on the server).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import tempfile
import threading
import time
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
from pigeon.store.pg.db import CONNECT_TIMEOUT, Pool, store_error
from pigeon.store.pg.manager import DEFAULT_LEASE, ManagerSide
from pigeon.store.pg.nodes import HEARTBEAT, NodeRegistry, id_tail
from pigeon.store.pg.recent import RecentContent
from pigeon.store.pg.slots import PgDestinationSlots
from pigeon.store.pg.spool import PgSpool
from pigeon.vocab.errors import StoreError

__all__ = ["ADMIN_CHANNEL", "WAKE_GAP", "PgQueueStore", "is_postgres_url"]

#: LISTEN/NOTIFY channel of operator actions every node must hear (`tell_nodes`:
#: a flush, app/clusterwake.py).
ADMIN_CHANNEL = "pigeon_admin"

WAKE_GAP = 0.25  # seconds: at most one wake-up per gap (see the contract)

log = logging.getLogger("pigeon.queue")


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
        listen: str = "",
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
        #: Cluster-wide destination slots (slots.py): one connection of their own.
        self._slots = PgDestinationSlots(lambda: self._pool.connect(autocommit=True))
        self._listen_addresses = listen
        self._registry: NodeRegistry | None = None
        self._id_tail = ""
        self._beating = threading.Event()
        self._heart: threading.Thread | None = None
        self._recent = RecentContent()  # content committed here lately (recent.py)
        # The NOTIFY payload of this store's commits: node and process, so a
        # command run on the same node (sendmail) still wakes the server.
        self._origin = f"{node}/{os.getpid()}"
        self._woke_at = float("-inf")  # monotonic time of the last wake-up

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
        registry = NodeRegistry(pool, self._node, listen=self._listen_addresses)
        try:
            self._id_tail = id_tail(registry.node_id())
            if owner:
                registry.join()  # NodeNameInUse: another live process has our name
        except StoreError:
            pool.close()
            raise
        self._pool, self._registry = pool, registry
        self._committer = Committer(pool, self._health, origin=self._origin, recent=self._recent)
        if owner:
            self._start_heartbeat()

    def take_ownership(self) -> None:
        """After `pigeon restart`: the predecessor has ended, its node name is ours."""
        if self._registry is None:
            raise StoreError("queue take-over: store not open")
        self._registry.join(force=True)
        self._start_heartbeat()

    def _start_heartbeat(self) -> None:
        if self._heart is not None:
            return
        self._beating.clear()
        self._heart = threading.Thread(
            target=self._heartbeat, name="pigeon-node-heartbeat", daemon=True
        )
        self._heart.start()

    def _heartbeat(self) -> None:
        """The heartbeat thread (nodes.py): off the event loop, until close()."""
        registry, failing = self._registry, False
        while registry is not None and not self._beating.wait(HEARTBEAT):
            try:
                registry.beat()
            except StoreError as exc:
                if not failing:
                    log.warning("node heartbeat failed: %s", exc)
                failing = True
                continue
            failing = False

    def nodes(self) -> list[dict[str, Any]]:
        """Every node of the cluster and its state (nodes.py), for status and metrics."""
        if self._registry is None:
            raise StoreError("nodes: store not open")
        return self._registry.nodes()

    def close(self) -> None:
        committer, self._committer = self._committer, None
        if committer is not None:
            committer.close()
        heart, self._heart = self._heart, None
        if heart is not None:
            self._beating.set()
            heart.join(timeout=CONNECT_TIMEOUT + 1)
        registry, self._registry = self._registry, None
        if registry is not None:
            try:
                registry.leave()
            except StoreError as exc:  # the database is down: the row goes stale instead
                log.warning("node %s: could not record the stop: %s", self._node, exc)
        self._pool.close()
        self._slots.close()
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
        spool = PgSpool(NEW_ID.next() + self._id_tail, self._spool_dir, envelope)
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
        return PgContent(self._pool, queue_id, self._recent)

    def destination_slots(self) -> PgDestinationSlots:
        """The cluster-wide per-destination slots (slots.py) of this node."""
        return self._slots

    # --- LISTEN/NOTIFY ----------------------------------------------------------------

    def wait_for_mail(self, timeout: float) -> bool:
        """True when a node committed new mail (see the contract); from a worker thread."""
        return any(channel == CHANNEL for channel, _ in self.wait_for_events(timeout))

    def wait_for_events(self, timeout: float) -> list[tuple[str, str]]:
        """The (channel, payload) notifications that came within `timeout`
        seconds: CHANNEL (new mail) and ADMIN_CHANNEL (`tell_nodes`); [] if
        none. From a worker thread."""
        import psycopg

        with self._listen_lock:
            if self._committer is None:
                raise StoreError("queue listen: store not open")
            try:
                if self._listen is None:
                    self._listen = self._pool.connect(autocommit=True)
                    self._listen.execute(f"LISTEN {CHANNEL}")
                    self._listen.execute(f"LISTEN {ADMIN_CHANNEL}")
                # This process's own commits (the payload names the committing
                # node and process, committer.py) are not news: its manager starts
                # that mail itself, and a scan for it would only race that start.
                got: list[tuple[str, str]] = []
                deadline = time.monotonic() + timeout
                # Woken a moment ago: let the rest of the gap pass first (what
                # arrives meanwhile waits in the connection, taken below).
                rest = min(self._woke_at + WAKE_GAP - time.monotonic(), timeout)
                if rest > 0:
                    time.sleep(rest)
                while not got:
                    left = deadline - time.monotonic()
                    got += self._news(self._listen.notifies(timeout=max(0.0, left), stop_after=1))
                    if left <= 0:
                        break
                # Drain what else arrived: one wake-up per burst is enough.
                got += self._news(self._listen.notifies(timeout=0))
                if got:
                    self._woke_at = time.monotonic()
                return got
            except psycopg.Error as e:
                if self._listen is not None:
                    self._listen.close()
                    self._listen = None
                raise store_error("queue listen", e) from e

    def _news(self, notifies: Any) -> list[tuple[str, str]]:
        """The notifications that are news to this process (not its own commits)."""
        return [
            (n.channel, n.payload)
            for n in notifies
            if not (n.channel == CHANNEL and n.payload == self._origin)
        ]

    def tell_nodes(self, message: dict[str, Any]) -> None:
        """Send `message` (JSON, under 8000 octets: PostgreSQL's payload limit)
        to every node listening, this one included (ADMIN_CHANNEL)."""
        payload = json.dumps({**message, "from": self._node}, separators=(",", ":"))
        with self._pool.conn("queue notify") as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (ADMIN_CHANNEL, payload))

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
