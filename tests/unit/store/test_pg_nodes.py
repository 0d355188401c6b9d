"""The nodes of a shared queue (store/pg/nodes.py, migrations/0002_nodes.sql):
a name runs in one process at a time, heartbeats, the cluster's view of its
nodes, and node ids in the queue IDs. Real PostgreSQL (pigeon.testing.postgres)."""

from __future__ import annotations

import re

import pytest

from pigeon.testing.postgres import PostgresCluster
from pigeon.testing.store_kit import commit_sample


@pytest.fixture
def dsn(postgres: PostgresCluster) -> str:
    return postgres.dsn(postgres.new_database())


def _store(dsn: str, node: str, **kw):
    from pigeon.store.pg.store import PgQueueStore

    return PgQueueStore(dsn, node=node, **kw)


def _sql(dsn: str, query: str, *args):
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, args)
        return cur.fetchall() if cur.description else None


def _states(store) -> dict[str, str]:
    return {n["name"]: n["state"] for n in store.nodes()}


def test_a_name_runs_in_one_process_at_a_time(dsn):
    from pigeon.store.pg.nodes import NodeNameInUse

    first = _store(dsn, "node-a", migrate=True)
    first.open(owner=True)
    try:
        # Another process of this host under the same name: pid 1 is alive.
        _sql(dsn, "UPDATE pigeon_nodes SET pid = 1 WHERE name = 'node-a'")
        second = _store(dsn, "node-a")
        with pytest.raises(NodeNameInUse, match=r"queue.node 'node-a' is in use .*pid 1,"):
            second.open(owner=True)
        with _store(dsn, "node-a") as reader:  # not the owner: sendmail, `queue list`
            assert _states(reader) == {"node-a": "alive"}
    finally:
        first.close()
    with _store(dsn, "node-b") as reader:
        assert _states(reader) == {"node-a": "stopped", "node-b": "stopped"}
    second = _store(dsn, "node-a")
    second.open(owner=True)  # the clean stop freed the name
    second.close()


def test_a_stale_or_dead_holder_is_taken_over(dsn):
    with _store(dsn, "node-a", migrate=True) as store:
        commit_sample(store, 1)
    # A node of another host that stopped beating 60 s ago (it died, or lost
    # the database): lost, and its name may be taken.
    _sql(
        dsn,
        "UPDATE pigeon_nodes SET instance = 'x', host = 'elsewhere', pid = 1, stopped_at = NULL, "
        "last_seen = now() - interval '60 seconds' WHERE name = 'node-a'",
    )
    with _store(dsn, "node-b") as reader:
        assert _states(reader)["node-a"] == "lost"
    store = _store(dsn, "node-a")
    store.open(owner=True)
    store.close()
    # A fresh heartbeat, but from a process of this host that no longer
    # exists (SIGKILLed and restarted at once): taken over too.
    _sql(
        dsn,
        "UPDATE pigeon_nodes SET instance = 'x', host = %s, pid = 4194303, stopped_at = NULL, "
        "last_seen = now() WHERE name = 'node-a'",
        __import__("socket").gethostname(),
    )
    store = _store(dsn, "node-a")
    store.open(owner=True)
    assert _states(store)["node-a"] == "alive"
    store.close()


def test_heartbeat_and_a_name_taken_over_meanwhile(dsn, caplog):
    store = _store(dsn, "node-a", migrate=True)
    store.open(owner=True)
    try:
        registry = store._registry
        _sql(dsn, "UPDATE pigeon_nodes SET last_seen = now() - interval '1 hour'")
        assert registry.beat() is True
        (age,) = _sql(dsn, "SELECT extract(epoch FROM now() - last_seen) FROM pigeon_nodes")[0]
        assert float(age) < 60
        _sql(dsn, "UPDATE pigeon_nodes SET instance = 'someone else', pid = 77")
        assert registry.beat() is False
        assert "taken over by another process" in caplog.text and "pid 77" in caplog.text
    finally:
        store.close()
    # close() left the other process's row alone.
    assert _sql(dsn, "SELECT instance, stopped_at IS NULL FROM pigeon_nodes") == [
        ("someone else", True)
    ]


def test_queue_ids_carry_the_node_id(dsn):
    from pigeon.store.pg.nodes import id_tail

    assert [id_tail(n) for n in (1, 31, 32, 1023, 1024)] == ["01", "0Z", "10", "ZZ", "100"]
    with _store(dsn, "node-a", migrate=True) as a, _store(dsn, "node-b") as b:
        ids_a = [commit_sample(a, n) for n in range(3)]
        ids_b = [commit_sample(b, n) for n in range(3)]
        by_name = {n["name"]: n["node_id"] for n in a.nodes()}
    assert by_name["node-a"] != by_name["node-b"]
    for ids, name in ((ids_a, "node-a"), (ids_b, "node-b")):
        for qid in ids:
            assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{17}", qid), qid
            assert qid[15:] == id_tail(by_name[name])
    for _ in range(2):  # starts of a node keep its id, and use up none
        again = _store(dsn, "node-a")
        again.open(owner=True)
        again.close()
    with _store(dsn, "node-c") as c:
        ids = {n["name"]: n["node_id"] for n in c.nodes()}
    assert ids == {**by_name, "node-c": max(by_name.values()) + 1}
