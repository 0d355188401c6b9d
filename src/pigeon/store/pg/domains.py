"""PgDomains: the domains and aliases nodes share, in the tables of 0004_domains.sql.

Contract:
  * `PgDomains(dsn)` reads and changes `pigeon_domains` and
    `pigeon_aliases`. Each call opens one short connection (callers are
    `pigeon domain|alias`, a node's start and reload: rare), waits at most
    db.CONNECT_TIMEOUT to connect, and raises `StoreError` (db.store_error)
    when the database cannot be reached or refuses; a database older than
    schema 4 is refused with "run `pigeon db migrate`"
    (migrate.incompatibility).
  * `read()` is (domains, {address: targets}), one consistent snapshot
    (one REPEATABLE READ transaction).
  * Changes take values already checked (config/shared.py: `check_domain`,
    `check_alias`) and return whether anything changed:
      - `add_domain(d)`: False when it was there already;
      - `remove_domain(d)`: False when it was not there;
      - `add_alias(address, targets)`: creates the alias, or appends the
        targets it lacks to an existing one (order kept, no duplicates);
      - `remove_alias(address, targets=())`: removes those targets (all of
        them when none are given); an alias left without targets is gone.
    A change that changed something sends `{"op": "directory", "from":
    ...}` on the admin channel (store.ADMIN_CHANNEL) in the same
    transaction, so every node listening hears it once it is committed
    (PostgreSQL delivers NOTIFY at commit) and reloads
    (app/clusterwake.py). Concurrent changes of one alias serialise on its
    row (SELECT ... FOR UPDATE), so none is lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from pigeon.store.pg import migrate as schema
from pigeon.store.pg.db import CONNECT_TIMEOUT, store_error
from pigeon.vocab.errors import StoreError

__all__ = ["ADMIN_CHANNEL", "PgDomains", "short_connection"]

ADMIN_CHANNEL = "pigeon_admin"  # store.ADMIN_CHANNEL (not imported: that module is heavy)


@contextmanager
def short_connection(dsn: str, what: str, application: str) -> Iterator[Any]:
    """One connection for one rare command: at most db.CONNECT_TIMEOUT to
    connect, a schema this code cannot use refused, every database error a
    StoreError naming `what`."""
    import psycopg

    try:
        with psycopg.connect(
            dsn, connect_timeout=CONNECT_TIMEOUT, application_name=application
        ) as conn:
            problem = schema.incompatibility(schema._applied(conn))
            conn.rollback()
            if problem:
                raise StoreError(f"{what}: {problem}")
            yield conn
    except psycopg.Error as exc:
        raise store_error(what, exc) from exc


class PgDomains:
    def __init__(self, dsn: str, *, sender: str = "pigeon domain") -> None:
        self.dsn = dsn
        self.sender = sender  # the "from" of the notification

    def _conn(self, what: str) -> AbstractContextManager[Any]:
        return short_connection(self.dsn, what, "pigeon directory")

    def read(self) -> tuple[list[str], dict[str, tuple[str, ...]]]:
        with self._conn("shared domains and aliases") as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            domains = [r[0] for r in conn.execute("SELECT domain FROM pigeon_domains ORDER BY 1")]
            aliases = {
                str(a): tuple(t)
                for a, t in conn.execute("SELECT address, targets FROM pigeon_aliases ORDER BY 1")
            }
            conn.rollback()
        return domains, aliases

    def _notify(self, conn: Any) -> None:
        payload = json.dumps({"op": "directory", "from": self.sender}, separators=(",", ":"))
        conn.execute("SELECT pg_notify(%s, %s)", (ADMIN_CHANNEL, payload))

    def add_domain(self, domain: str) -> bool:
        with self._conn("shared domain add") as conn, conn.transaction():
            cur = conn.execute(
                "INSERT INTO pigeon_domains (domain) VALUES (%s) ON CONFLICT DO NOTHING", (domain,)
            )
            if cur.rowcount:
                self._notify(conn)
            return bool(cur.rowcount)

    def remove_domain(self, domain: str) -> bool:
        with self._conn("shared domain remove") as conn, conn.transaction():
            cur = conn.execute("DELETE FROM pigeon_domains WHERE domain = %s", (domain,))
            if cur.rowcount:
                self._notify(conn)
            return bool(cur.rowcount)

    def add_alias(self, address: str, targets: Sequence[str]) -> bool:
        with self._conn("shared alias add") as conn, conn.transaction():
            wanted = list(dict.fromkeys(targets))
            cur = conn.execute(
                "INSERT INTO pigeon_aliases (address, targets) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (address, wanted),
            )
            if not cur.rowcount:  # there already: append what it lacks
                row = conn.execute(
                    "SELECT targets FROM pigeon_aliases WHERE address = %s FOR UPDATE", (address,)
                ).fetchone()
                if row is None:  # removed between the two statements
                    raise StoreError("shared alias add: removed meanwhile by another command")
                old = list(row[0])
                new = old + [t for t in wanted if t not in old]
                if new == old:
                    return False
                conn.execute(
                    "UPDATE pigeon_aliases SET targets = %s WHERE address = %s", (new, address)
                )
            self._notify(conn)
            return True

    def remove_alias(self, address: str, targets: Sequence[str] = ()) -> bool:
        with self._conn("shared alias remove") as conn, conn.transaction():
            row = conn.execute(
                "SELECT targets FROM pigeon_aliases WHERE address = %s FOR UPDATE", (address,)
            ).fetchone()
            if row is None:
                return False
            old = list(row[0])
            new = [t for t in old if t not in targets] if targets else []
            if new == old:
                return False
            if new:
                conn.execute(
                    "UPDATE pigeon_aliases SET targets = %s WHERE address = %s", (new, address)
                )
            else:
                conn.execute("DELETE FROM pigeon_aliases WHERE address = %s", (address,))
            self._notify(conn)
            return True
