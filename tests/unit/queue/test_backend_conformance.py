"""The queue-store conformance suite (pigeon.testing.store_conformance), one
test per check, run against every backend of pigeon/queue/api.py: the
embedded store (fsync on, the home node first; fsync off, the home node
second) and the PostgreSQL store (pigeon/store/pg) on a throw-away cluster
(pigeon.testing.postgres), each check in a fresh database.

Each backend has its real way to fail a commit as a full disk would: a
FaultyDisk under the embedded store, and for PostgreSQL a trigger that
raises SQLSTATE 53100 (disk_full) once, as the server does when it cannot
extend a file.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pigeon.queue.store import QueueStore
from pigeon.testing.storage import FaultyDisk
from pigeon.testing.store_conformance import CHECKS
from pigeon.testing.store_kit import Ctx

_BREAK_ONCE = """
CREATE SEQUENCE IF NOT EXISTS test_break_once;
CREATE OR REPLACE FUNCTION test_break_once() RETURNS trigger AS $$
BEGIN
    IF nextval('test_break_once') = 1 THEN
        RAISE EXCEPTION 'could not extend file: No space left on device'
            USING ERRCODE = 'disk_full';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER test_break_once BEFORE INSERT ON pigeon_content
    FOR EACH ROW EXECUTE FUNCTION test_break_once();
"""


def _embedded(fsync: bool, nodes: tuple[str, str]):
    def setup(request: pytest.FixtureRequest):
        disks: dict[int, FaultyDisk] = {}

        def factory(place: Path, node: str) -> QueueStore:
            disk = FaultyDisk()
            store = QueueStore(place, node=node, fsync=fsync, disk=disk)
            disks[id(store)] = disk
            return store

        def break_next_commit(store) -> None:
            disks[id(store)].fail("write_all", OSError(errno.ENOSPC, "No space left on device"))

        return factory, nodes, break_next_commit

    return setup


def _postgresql(request: pytest.FixtureRequest):
    import psycopg

    from pigeon.store.pg.store import PgQueueStore

    cluster = request.getfixturevalue("postgres")
    databases: dict[Path, str] = {}

    def factory(place: Path, node: str) -> PgQueueStore:
        if place not in databases:  # a fresh database per check (per place)
            databases[place] = cluster.dsn(cluster.new_database())
        return PgQueueStore(databases[place], node=node, spool_dir=place.parent, migrate=True)

    def break_next_commit(store) -> None:
        with psycopg.connect(store.dsn, autocommit=True) as conn:
            conn.execute(_BREAK_ONCE.encode())

    return factory, ("node-a", "node-b"), break_next_commit


BACKENDS = {
    "embedded": _embedded(True, ("local", "node-b")),
    "embedded-nofsync": _embedded(False, ("node-a", "local")),
    "postgresql": _postgresql,
}


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("backend", BACKENDS)
def test_conformance(backend, check, request, tmp_path):
    factory, nodes, hook = BACKENDS[backend](request)
    check(Ctx(factory, tmp_path / "queue", nodes, hook))
