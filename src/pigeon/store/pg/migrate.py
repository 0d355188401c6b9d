"""The PostgreSQL schema: versioned migrations, applied and checked.

Contract:
  * Migrations are the files `migrations/NNNN_name.sql`, applied in version
    order, each in its own transaction together with its row in
    `pigeon_schema` (version, name, min_node_schema, applied_at): a
    migration is applied wholly or not at all, and never twice.
  * `migrate(conn)` applies what is missing and returns the versions it
    applied. It holds a transaction-level advisory lock (ADVISORY_KEY), so
    two `pigeon db migrate` runs (or nodes) at once apply each migration
    once; the second waits, then finds nothing to do.
  * Expand, then contract (issue 17, item 3): a migration only adds
    (tables, columns, indexes) unless it says otherwise in its header line
    `-- min-node-schema: N`: the oldest schema a running node may have been
    built for once it is applied. A node refuses to start
    (`require_compatible`) when the database is older than SCHEMA_REQUIRED
    ("run pigeon db migrate") or when an applied migration needs nodes
    newer than this code (SCHEMA_KNOWN); so migrating while older nodes run
    is safe for every expand migration, and a contract migration is applied
    only after every node runs code that no longer needs what it removes.
  * `status(conn)` is what `pigeon db check` reports: the version, the
    pending migrations, whether this code can run on the database, the
    server's version and the queue's rows per state.
  * Errors: psycopg errors propagate to the caller (the CLI turns them into
    one line); nothing here prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

__all__ = [
    "ADVISORY_KEY",
    "SCHEMA_KNOWN",
    "SCHEMA_REQUIRED",
    "Migration",
    "SchemaStatus",
    "incompatibility",
    "migrate",
    "migrations",
    "open_check",
    "status",
]

#: pg_advisory_xact_lock key serialising migrations ("pigeon01" as an int).
ADVISORY_KEY = 0x7069_6765_6F6E_3031 - (1 << 63)
#: The schema version this code needs at least (it reads and writes what it
#: created): 0002_nodes (store/pg/nodes.py), 0003_directory (accounts, abuse
#: counters the nodes share), 0004_domains (domains and aliases they share),
#: 0005_tokens (the HTTP API's tokens they share).
SCHEMA_REQUIRED = 5

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_MIN_NODE = re.compile(r"^--\s*min-node-schema:\s*(\d+)\s*$", re.M)

_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS pigeon_schema (
    version         integer PRIMARY KEY,
    name            text NOT NULL,
    min_node_schema integer NOT NULL,
    applied_at      timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    min_node_schema: int  # the oldest node schema that may run once it is applied


def migrations() -> list[Migration]:
    """Every migration shipped with this code, in version order."""
    out = []
    for entry in resources.files("pigeon.store.pg.migrations").iterdir():
        m = _FILE.match(entry.name)
        if not m:
            continue
        sql = entry.read_text(encoding="utf-8")
        floor = _MIN_NODE.search(sql)
        version = int(m.group(1))
        out.append(Migration(version, m.group(2), sql, int(floor.group(1)) if floor else 1))
    out.sort(key=lambda mig: mig.version)
    # Unique, not necessarily 1..n: parallel branches of issue 17 number their
    # migrations ahead (0002 nodes, 0003 directory, 0004 leases); migrate()
    # applies every one missing whatever the order it arrives in.
    versions = [mig.version for mig in out]
    if len(set(versions)) != len(versions) or not versions or versions[0] != 1:
        raise RuntimeError(f"migration versions clash: {versions}")
    return out


#: The newest schema this code knows (the last migration it ships).
SCHEMA_KNOWN = migrations()[-1].version


def _applied(conn: Any) -> dict[int, int]:
    """version -> min_node_schema of the applied migrations ({} on a new database)."""
    exists = conn.execute("SELECT to_regclass('pigeon_schema') IS NOT NULL").fetchone()[0]
    if not exists:
        return {}
    rows = conn.execute("SELECT version, min_node_schema FROM pigeon_schema").fetchall()
    return {int(v): int(n) for v, n in rows}


def migrate(conn: Any) -> list[int]:
    """Apply the missing migrations (see the contract); `conn` not in autocommit."""
    done: list[int] = []
    for mig in migrations():
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_KEY,))
            conn.execute(_SCHEMA_TABLE)
            if mig.version in _applied(conn):
                continue
            conn.execute(mig.sql.encode())
            conn.execute(
                "INSERT INTO pigeon_schema (version, name, min_node_schema) VALUES (%s, %s, %s)",
                (mig.version, mig.name, mig.min_node_schema),
            )
            done.append(mig.version)
    return done


@dataclass
class SchemaStatus:
    version: int  # the highest applied migration (0: none)
    pending: list[int]  # shipped with this code, not applied yet
    unknown: list[int]  # applied, but newer than this code
    problem: str | None  # why this code cannot run on the database, or None
    server: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.problem is None


def incompatibility(applied: dict[int, int]) -> str | None:
    """Why a node of this code may not use a database with `applied` migrations."""
    version = max(applied, default=0)
    if version < SCHEMA_REQUIRED:
        return (
            f"database schema version {version} is older than {SCHEMA_REQUIRED}, "
            "which this pigeon needs: run `pigeon db migrate`"
        )
    floor = max(applied.values(), default=0)
    if floor > SCHEMA_KNOWN:
        return (
            f"database schema {version} needs nodes built for schema {floor} or newer; "
            f"this pigeon knows schema {SCHEMA_KNOWN}: upgrade it"
        )
    return None


def open_check(conn: Any, *, apply: bool) -> str | None:
    """What a store's `open()` does on its first connection (autocommit):
    apply the missing migrations when `apply` (tests, a single node owning
    its database), then say why this code cannot use the database, or None."""
    if apply:
        conn.autocommit = False
        try:
            migrate(conn)
        finally:
            conn.autocommit = True
    return status(conn).problem


def status(conn: Any) -> SchemaStatus:
    applied = _applied(conn)
    known = {m.version for m in migrations()}
    st = SchemaStatus(
        version=max(applied, default=0),
        pending=sorted(known - applied.keys()),
        unknown=sorted(applied.keys() - known),
        problem=incompatibility(applied),
        server=str(conn.execute("SHOW server_version").fetchone()[0]),
    )
    if applied:
        rows = conn.execute("SELECT state, count(*) FROM pigeon_queue GROUP BY state").fetchall()
        st.counts = {str(s): int(n) for s, n in rows}
    conn.rollback()
    return st
