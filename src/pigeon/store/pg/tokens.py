"""PgTokenRows: the HTTP API's tokens the nodes share, in the table of 0005_tokens.sql.

Contract:
  * `PgTokenRows(dsn)` reads and changes `pigeon_api_tokens`; the rules of
    a token (names, scopes, tenants, accounts, the hash) are web/tokens.py's,
    which checks every value before it gets here. Each call opens one short
    connection (domains.short_connection: at most db.CONNECT_TIMEOUT to
    connect, a schema older than 5 refused with "run `pigeon db migrate`")
    and raises `StoreError` when the database cannot be reached or refuses.
  * `read()` is every row as a tuple (name, sha256, scopes, created,
    tenant, account), oldest first.
  * `insert(row)` adds one; False when the name is taken (one statement:
    two `pigeon token add` of one name at once, one wins). `delete(name)`
    removes one; False when there was none.
"""

from __future__ import annotations

from typing import Any

from pigeon.store.pg.domains import short_connection

__all__ = ["PgTokenRows", "Row"]

#: (name, sha256, scopes, created, tenant, account)
Row = tuple[str, str, tuple[str, ...], float, str | None, str | None]

_COLUMNS = "name, sha256, scopes, created, tenant, account"


class PgTokenRows:
    """The shared API tokens (see the module contract)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def _conn(self, what: str) -> Any:
        return short_connection(self.dsn, what, "pigeon tokens")

    def read(self) -> list[Row]:
        with self._conn("shared API tokens") as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM pigeon_api_tokens ORDER BY created, name"
            ).fetchall()
            conn.rollback()
        return [(str(r[0]), str(r[1]), tuple(r[2]), float(r[3]), r[4], r[5]) for r in rows]

    def insert(self, row: Row) -> bool:
        name, sha256, scopes, created, tenant, account = row
        with self._conn("shared API token add") as conn, conn.transaction():
            cur = conn.execute(
                f"INSERT INTO pigeon_api_tokens ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (name) DO NOTHING",
                (name, sha256, list(scopes), created, tenant, account),
            )
            return bool(cur.rowcount)

    def delete(self, name: str) -> bool:
        with self._conn("shared API token remove") as conn, conn.transaction():
            cur = conn.execute("DELETE FROM pigeon_api_tokens WHERE name = %s", (name,))
            return bool(cur.rowcount)
