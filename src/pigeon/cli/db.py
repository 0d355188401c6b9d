"""`pigeon db migrate|check --store postgresql://...`: the shared database's schema.

Contract:
  * `pigeon db migrate` applies the migrations this pigeon ships that the
    database lacks (pigeon/store/pg/migrate.py: each in its own
    transaction, serialised by an advisory lock, safe while older nodes
    run: expand, then contract) and prints one line per migration applied,
    then the schema version.
  * `pigeon db check` prints the schema version, the migrations pending,
    the server's version, the queue's entries per state and whether this
    pigeon can run on the database; `--json` prints the same as one JSON
    object. It changes nothing.
  * The database comes from `--store URL` or $PIGEON_STORE; a URL that is
    not postgresql://... is a usage error (64). The URL's password is never
    printed (only host, port, database and user).
  * Exit: 0 ok; 1 (check) migrations pending or the schema unusable by this
    pigeon; 69 the database cannot be reached or refused the work (one
    line, no traceback); 64 usage.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from pigeon.cli._common import EX_USAGE, fail

HELP = "migrate or check the shared PostgreSQL database (several nodes)"
DESCRIPTION = """\
The PostgreSQL store lets several pigeon nodes share one queue. Its schema is
versioned: `migrate` brings the database up to this pigeon's schema (safe while
older nodes run), `check` reports the version and the database's health.
"""
EPILOG = """\
examples:
  pigeon db migrate --store postgresql://pigeon@db.example.net/pigeon
  PIGEON_STORE=postgresql:///pigeon pigeon db check --json
"""

EX_UNAVAILABLE = 69  # sysexits.h: the database cannot be reached


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("migrate", "check"), help="what to do")
    parser.add_argument(
        "--store",
        metavar="URL",
        default=os.environ.get("PIGEON_STORE", ""),
        help="the database, postgresql://USER@HOST:PORT/DB (default: $PIGEON_STORE)",
    )
    parser.add_argument("--json", action="store_true", help="check: print one JSON object")


def _where(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(url)
    host = info.get("host") or "local socket"
    port = f":{info['port']}" if info.get("port") else ""
    return f"{info.get('user') or '(default user)'}@{host}{port}/{info.get('dbname') or ''}"


def run(args: argparse.Namespace) -> int:
    from pigeon.store.pg.store import is_postgres_url

    if not args.store:
        return fail("db: no database: give --store postgresql://... or set PIGEON_STORE", EX_USAGE)
    if not is_postgres_url(args.store):
        return fail(f"db: --store must be a postgresql:// URL, not {args.store[:40]!r}", EX_USAGE)
    try:
        import psycopg
    except ImportError:
        return fail("db: psycopg is not installed (pip install 'pigeon[postgresql]')", EX_USAGE)
    from pigeon.store.pg import migrate as schema
    from pigeon.store.pg.db import CONNECT_TIMEOUT

    try:
        where = _where(args.store)
        with psycopg.connect(args.store, connect_timeout=CONNECT_TIMEOUT) as conn:
            if args.action == "migrate":
                applied = schema.migrate(conn)
                shipped = {m.version: m for m in schema.migrations()}  # numbers may skip
                for version in applied:
                    mig = shipped[version]
                    print(f"applied {version:04d}_{mig.name}")
                st = schema.status(conn)
                print(
                    f"{where}: schema version {st.version}" + ("" if applied else " (up to date)")
                )
                return 0 if st.ok else fail(f"db: {st.problem}", 1)
            return _check(where, schema.status(conn), args.json)
    except psycopg.Error as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return fail(f"db {args.action}: {reason}", EX_UNAVAILABLE)


def _check(where: str, st: Any, as_json: bool) -> int:
    from pigeon.store.pg.migrate import SCHEMA_KNOWN

    healthy = st.ok and not st.pending
    if as_json:
        doc = {
            "database": where,
            "server_version": st.server,
            "schema_version": st.version,
            "schema_known": SCHEMA_KNOWN,
            "pending": st.pending,
            "unknown": st.unknown,
            "usable": st.ok,
            "problem": st.problem,
            "queue": st.counts,
        }
        print(json.dumps(doc, sort_keys=True))
        return 0 if healthy else 1
    print(f"database:       {where} (PostgreSQL {st.server})")
    print(f"schema version: {st.version} (this pigeon knows {SCHEMA_KNOWN})")
    if st.pending:
        print(f"pending:        {', '.join(map(str, st.pending))}: run `pigeon db migrate`")
    if st.unknown:
        print(f"newer than this pigeon: {', '.join(map(str, st.unknown))}")
    queue = ", ".join(f"{k} {v}" for k, v in sorted(st.counts.items())) or "empty"
    print(f"queue:          {queue}")
    print(f"usable:         {'yes' if st.ok else 'no: ' + str(st.problem)}")
    return 0 if healthy else 1
