"""PgAccountStore: the accounts (pigeon/auth/directory.py) in the database nodes share.

Contract:
  * `PgAccountStore(dsn)` is an `AccountDirectory` with the embedded
    store's promises (pigeon/auth/accounts.py) over the tables
    `pigeon_accounts` and `pigeon_addresses` (migrations/0003_directory.sql):
    an account added, changed or removed by `pigeon user` (or the console)
    against any node is seen by the next login on every node, without a
    reload: every query reads the shared tables, nothing is cached (a
    login already costs an argon2id verification, far more than a query).
  * The same rules as the embedded store, the same code: `AccountRecords`
    (normalisation, owned addresses, argon2id hash and SCRAM-SHA-256 keys,
    RFC 5802 §3), its SQLite statements translated (`_dialect`: `%s`
    placeholders, the pigeon_ tables), so both answer alike; the
    conformance suite (pigeon.testing.account_conformance) runs on both.
  * `open()` connects and refuses a database whose schema is older than
    this code needs ("run pigeon db migrate", migrate.incompatibility);
    `migrate=True` applies the missing migrations first (tests). `owner`
    and `take_ownership()` are the embedded file's upgrade; a database is
    upgraded by `pigeon db migrate`: accepted, unused.
  * Errors: user mistakes and database failures raise `AccountError` (one
    line; the psycopg error stays its `__cause__`), which the AUTH path
    answers with 454 4.7.0 (pigeon/auth/service.py). Two additions racing
    for one name or address: the primary key refuses the second.
  * Thread-safe: a small pool (store/pg/db.py), as the server's
    authentication threads call it at once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pigeon.auth.accounts import AccountError, AccountRecords
from pigeon.store.pg import migrate as schema
from pigeon.store.pg.db import Pool
from pigeon.vocab.errors import StoreError

__all__ = ["PgAccountStore"]


_TABLE = re.compile(r"\b(accounts|addresses)\b")


@functools.lru_cache(maxsize=64)  # a handful of statements, asked at every login
def _dialect(sql: str) -> str:
    """AccountRecords' SQLite statement for PostgreSQL: `%s` placeholders and
    the pigeon_ tables (same columns, same order: 0003_directory.sql)."""
    return _TABLE.sub(r"pigeon_\1", sql.replace("?", "%s"))


class PgAccountStore(AccountRecords):
    def __init__(self, dsn: str, *, pool_size: int = 4, migrate: bool = False) -> None:
        self.dsn = dsn
        self.path = None  # no file: what the embedded store's callers may print
        self._pool_size = pool_size
        self._migrate = migrate
        self._pool: Pool | None = None

    # --- lifetime -----------------------------------------------------------------

    def open(self, *, owner: bool = False) -> PgAccountStore:
        if self._pool is not None:
            return self
        pool = Pool(self.dsn, size=self._pool_size, application_name="pigeon accounts")
        try:
            with pool.conn("account store") as conn:
                problem = schema.open_check(conn, apply=self._migrate)
        except StoreError as exc:
            pool.close()
            raise AccountError(f"cannot open the account store: {exc}") from exc
        if problem:
            pool.close()
            raise AccountError(f"cannot open the account store: {problem}")
        self._pool = pool
        return self

    def take_ownership(self) -> None:
        """The embedded file's upgrade after `pigeon restart`: nothing to do here."""

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> PgAccountStore:
        return self if self._pool is not None else self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        if self._pool is None:
            raise AccountError("the account store is not open")
        try:
            with self._pool.conn("account store") as conn:
                yield conn
        except StoreError as exc:
            raise AccountError(str(exc)) from exc

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._conn() as conn:
            return conn.execute(_dialect(sql), args).fetchall()

    def _tx(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        import psycopg

        try:
            with self._conn() as conn, conn.transaction():
                for sql, args in statements:
                    conn.execute(_dialect(sql), args)
        except AccountError as exc:
            if isinstance(exc.__cause__, StoreError) and isinstance(
                exc.__cause__.__cause__, psycopg.errors.UniqueViolation
            ):
                raise AccountError(
                    "user or address already exists (added meanwhile on another node?)"
                ) from exc
            raise
