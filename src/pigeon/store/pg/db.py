"""Connections to the shared PostgreSQL database, and its errors as StoreErrors.

Contract:
  * `Pool(dsn, size)` hands out autocommit connections (`with pool.conn()
    as c`), at most `size` at once; a caller beyond that waits at most
    `wait` seconds, then gets a StoreError. A connection that broke is
    dropped, never handed out again; one returned inside a failed
    transaction is rolled back first. Writes use `conn.transaction()`:
    BEGIN ... COMMIT, so a call that returned has committed (the server's
    synchronous_commit decides how durable a COMMIT is: on by default, and
    pigeon assumes it).
  * Connecting waits at most CONNECT_TIMEOUT seconds (libpq's
    connect_timeout) and every statement at most `statement_timeout`
    (CONTRIBUTING.md, rule 4: every wait is bounded).
  * `store_error(what, exc)` is the one place where a psycopg error
    becomes the StoreError of the queue interfaces (pigeon/queue/api.py):
    SQLSTATE 53100 (disk_full) and class 53 are `.disk_full` (the SMTP side
    answers 452 4.3.1); a lost or refused connection, class 08, 57 (the
    server shutting down), 58 (I/O) and 53 are `.storage_fault` (451 4.3.0,
    retried); anything else is a plain StoreError. The psycopg error stays
    its `__cause__`; its text goes to the log only (rule 6).
  * Thread-safe: the pool is shared by the committer thread, the manager's
    worker threads and the content readers.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from pigeon.vocab.errors import StoreError

__all__ = ["CONNECT_TIMEOUT", "Pool", "is_storage_fault", "store_error"]

CONNECT_TIMEOUT = 10  # seconds
_STATEMENT_TIMEOUT_MS = 60_000
_FAULT_CLASSES = ("08", "53", "57", "58")


def is_storage_fault(exc: BaseException) -> bool:
    import psycopg

    if isinstance(exc, StoreError):
        return exc.storage_fault
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return state[:2] in _FAULT_CLASSES


def store_error(what: str, exc: BaseException) -> StoreError:
    """`exc` as the StoreError to raise (see the contract); raise it `from exc`."""
    if isinstance(exc, StoreError):
        return exc
    state = getattr(exc, "sqlstate", None) or ""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreError(
        f"{what}: {reason}", disk_full=state[:2] == "53", storage_fault=is_storage_fault(exc)
    )


class Pool:
    """A small bounded connection pool (see the contract)."""

    def __init__(
        self,
        dsn: str,
        *,
        size: int = 8,
        wait: float = 30.0,
        application_name: str = "pigeon",
        statement_timeout_ms: int = _STATEMENT_TIMEOUT_MS,
    ) -> None:
        self.dsn = dsn
        self.wait = wait
        self._app = application_name
        self._timeout_ms = statement_timeout_ms
        self._idle: list[Any] = []
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._closed = False

    def connect(self, *, autocommit: bool = True) -> Any:
        """A new connection outside the pool (LISTEN, migrations); the caller closes it."""
        import psycopg

        conn = psycopg.connect(
            self.dsn,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=self._app,
            options=f"-c statement_timeout={self._timeout_ms}",
        )
        return conn

    @contextlib.contextmanager
    def conn(self, what: str) -> Iterator[Any]:
        """A pooled connection; psycopg errors inside the block become StoreErrors."""
        import psycopg

        if self._closed:
            raise StoreError(f"{what}: store not open")
        if not self._slots.acquire(timeout=self.wait):
            raise StoreError(f"{what}: no database connection free", storage_fault=True)
        conn = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self.connect()
            yield conn
        except psycopg.Error as e:
            raise store_error(what, e) from e
        finally:
            if conn is not None:
                self._give_back(conn)
            self._slots.release()

    def _give_back(self, conn: Any) -> None:
        from psycopg import pq

        status = conn.info.transaction_status
        if conn.closed or conn.broken or status == pq.TransactionStatus.UNKNOWN:
            conn.close()
            return
        if status != pq.TransactionStatus.IDLE:
            try:
                conn.rollback()
            except Exception:
                conn.close()
                return
        with self._lock:
            if self._closed:
                conn.close()
            else:
                self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
