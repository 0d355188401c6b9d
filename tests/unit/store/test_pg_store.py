"""The PostgreSQL store beyond the conformance suite: migrations and `pigeon
db`, refusing a schema it cannot use, two nodes on one database (leases,
LISTEN/NOTIFY), and an unreachable database as a storage fault. Each test
gets a fresh database on the session's throw-away cluster
(pigeon.testing.postgres)."""

from __future__ import annotations

import json
import threading

import pytest

from pigeon.cli.main import main
from pigeon.testing.postgres import PostgresCluster
from pigeon.testing.store_kit import commit_sample
from pigeon.vocab import QueueState, StoreError


@pytest.fixture
def dsn(postgres: PostgresCluster) -> str:
    return postgres.dsn(postgres.new_database())


def _store(dsn: str, node: str = "node-a", **kw):
    from pigeon.store.pg.store import PgQueueStore

    return PgQueueStore(dsn, node=node, **kw)


def test_migrate_then_check(dsn, capsys):
    from pigeon.store.pg.migrate import SCHEMA_KNOWN, migrations

    versions = [m.version for m in migrations()]  # 0001_queue, then the others of issue 17
    assert main(["db", "check", "--store", dsn]) == 1
    shown = ", ".join(map(str, versions))
    assert f"pending:        {shown}: run `pigeon db migrate`" in capsys.readouterr().out
    assert main(["db", "migrate", "--store", dsn]) == 0
    out = capsys.readouterr().out
    assert out.startswith("applied 0001_queue\n") and f"schema version {SCHEMA_KNOWN}\n" in out
    assert main(["db", "migrate", "--store", dsn]) == 0, "a second migrate"
    assert "(up to date)" in capsys.readouterr().out
    with _store(dsn) as store:
        commit_sample(store, 1)
    assert main(["db", "check", "--store", dsn, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == SCHEMA_KNOWN and doc["pending"] == [] and doc["usable"]
    assert doc["queue"] == {"incoming": 1}
    assert "@127.0.0.1:" in doc["database"]


def test_concurrent_migrations_apply_each_version_once(dsn):
    import psycopg

    from pigeon.store.pg import migrate as schema

    start, results = threading.Barrier(3), []

    def run() -> None:
        with psycopg.connect(dsn) as conn:
            start.wait(30)
            results.append(schema.migrate(conn))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # Each migration is its own transaction: the runs may share the work,
    # but every version is applied exactly once.
    versions = [m.version for m in schema.migrations()]
    assert sorted(v for applied in results for v in applied) == versions, results
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pigeon_schema").fetchone()[0] == len(versions)


def test_a_node_refuses_a_schema_it_cannot_use(dsn):
    import psycopg

    with pytest.raises(StoreError, match="run `pigeon db migrate`"):
        _store(dsn).open()
    assert main(["db", "migrate", "--store", dsn]) == 0
    with psycopg.connect(dsn) as conn:  # a contract migration for nodes newer than us
        conn.execute(
            "INSERT INTO pigeon_schema (version, name, min_node_schema) VALUES (99, 'later', 99)"
        )
    with pytest.raises(StoreError, match="needs nodes built for schema 99 .* upgrade it"):
        _store(dsn).open()


def test_db_command_usage_and_unreachable_database(capsys):
    assert main(["db", "check", "--store", "/var/lib/pigeon"]) == 64
    assert "must be a postgresql:// URL" in capsys.readouterr().err
    from pigeon.testing.live import free_port

    url = f"postgresql://secretuser:hunter2@127.0.0.1:{free_port()}/none"
    assert main(["db", "check", "--store", url]) == 69
    err = capsys.readouterr().err
    assert err.startswith("pigeon: db check: ") and "hunter2" not in err


def test_an_unreachable_database_is_a_storage_fault():
    from pigeon.testing.live import free_port

    with pytest.raises(StoreError) as ei:
        _store(f"postgresql://pigeon@127.0.0.1:{free_port()}/none").open()
    assert ei.value.storage_fault and not ei.value.disk_full


def test_an_expired_lease_is_taken_over_by_another_node(dsn):
    a = _store(dsn, "node-a", migrate=True, lease=-1.0)  # every claim of a is over at once
    with a, _store(dsn, "node-b") as b, _store(dsn, "node-c") as c:
        dead = commit_sample(a, 1)  # node a claims it, then "dies"
        alive = commit_sample(b, 2)
        assert a.claim([dead]) == [dead] and b.claim([alive]) == [alive]
        report = c.recover()
        assert report.reactivated == [dead], "not exactly the expired claim was released"
        assert c.states([dead, alive]) == {dead: QueueState.INCOMING, alive: QueueState.ACTIVE}
        assert c.claim([dead]) == [dead]


def test_new_mail_on_one_node_wakes_another(dsn):
    with _store(dsn, "node-a", migrate=True) as a, _store(dsn, "node-b") as b:
        assert b.wait_for_mail(0) is False  # listening from here on
        commit_sample(a, 1)
        assert b.wait_for_mail(30) is True
        assert b.wait_for_mail(0) is False, "one commit woke it twice"
        assert [e.state for e in b.list()] == [QueueState.INCOMING]


def test_content_is_shared_between_nodes(dsn):
    from pigeon.testing.store_kit import BIG, read_content, sample_content

    with _store(dsn, "node-a", migrate=True) as a, _store(dsn, "node-b") as b:
        qid = commit_sample(a, 3, size=3 * BIG)
        assert read_content(b, qid) == sample_content(3, 3 * BIG)
        assert b.load(qid).to_dict() == a.load(qid).to_dict()
        b.remove_many([qid])
        assert a.entry(qid) is None


def test_sigkill_during_commits_loses_no_acknowledged_message(dsn):
    from pigeon.testing.commit_crash import commit_then_kill
    from pigeon.testing.store_kit import read_content

    assert main(["db", "migrate", "--store", dsn]) == 0
    acked = commit_then_kill(dsn)
    assert len(acked) >= 150
    with _store(dsn, "doomed") as store:
        store.recover()
        listed = {e.queue_id for e in store.list(QueueState.INCOMING)}
        assert set(acked) <= listed, "an acknowledged message was lost"
        for qid in acked:
            assert read_content(store, qid).startswith(b"Subject: " + qid.encode())
            assert store.load(qid).queue_id == qid
        assert store.stats()["commits"] == 0


def test_a_database_outage_fails_commits_as_storage_faults_then_heals(postgres):
    """While PostgreSQL is down a commit fails as a storage fault (the SMTP side
    answers 451) and records nothing; once it is back, the same store object
    commits again without being reopened, and what was acknowledged before is there."""
    from pigeon.testing.store_kit import read_content, sample_content, sample_envelope

    dsn = postgres.dsn(postgres.new_database())
    with _store(dsn, migrate=True) as store:
        before = commit_sample(store, 1)
        postgres.pause()
        try:
            spool = store.new_spool()
            spool.write(sample_content(2))
            fut = store.commit_async(spool, sample_envelope(spool.queue_id, 2))
            err = fut.exception(60)
            assert isinstance(err, StoreError) and err.storage_fault and not err.disk_full
            assert store.health.degraded, "the outage was not reported"
            with pytest.raises(StoreError):
                store.counts()
        finally:
            postgres.resume()
        after = commit_sample(store, 3)
        assert [e.queue_id for e in store.list()] == [before, after]
        assert read_content(store, before) == sample_content(1)
        store.probe()


def test_nodes_claiming_due_work_at_once_get_disjoint_fair_shares(dsn):
    import concurrent.futures
    import time

    with _store(dsn, "node-a", migrate=True) as a, _store(dsn, "node-b") as b:
        t0 = time.time() - 1000
        new = [commit_sample(a, n, at=t0 + n) for n in range(40)]
        old = [commit_sample(a, n, at=t0) for n in range(40, 80)]
        for i, qid in enumerate(old):
            a.update(a.load(qid), QueueState.DEFERRED, t0 + i)
        # One node alone: due()'s choice, claimed, with the state each was in.
        assert a.claim_due(time.time(), 4) == [
            (new[0], QueueState.INCOMING),
            (old[0], QueueState.DEFERRED),
            (new[1], QueueState.INCOMING),
            (old[1], QueueState.DEFERRED),
        ]
        start = threading.Barrier(2)

        def drain(store) -> list[str]:
            start.wait(30)
            got: list[str] = []
            for _ in range(100):  # bounded: 76 entries, at least one per round
                batch = store.claim_due(time.time(), 3)
                if not batch:
                    break
                got += [qid for qid, _ in batch]
            return got

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            got_a, got_b = (f.result(60) for f in [pool.submit(drain, s) for s in (a, b)])
        assert not set(got_a) & set(got_b), "an entry was claimed by both nodes"
        assert sorted(got_a + got_b) == sorted(new[2:] + old[2:]), "an entry was left"
        assert a.counts()["active"] == 80 and a.due(time.time(), 10) == []
        assert a.claim_due(time.time(), 0) == []


def test_queue_store_keys_choose_the_backend(tmp_path):
    from pigeon.config import ConfigError, load_config
    from pigeon.queue.store import QueueStore
    from pigeon.store.factory import queue_store
    from pigeon.store.pg.store import PgQueueStore

    path = tmp_path / "pigeon.toml"
    path.write_text('[queue]\nstore = "postgresql://pigeon@db.test/q"\nnode = "n1"\n')
    store = queue_store(load_config(path))
    assert isinstance(store, PgQueueStore) and store.node == "n1" and store.lease == 60.0
    for text, seconds in [('"30s"', 30.0), ('"2m"', 120.0), ("5", 5.0), ('"1.5s"', 1.5)]:
        path.write_text(f'[queue]\nstore = "postgresql://pigeon@db.test/q"\nlease = {text}\n')
        assert queue_store(load_config(path)).lease == seconds
    for bad in ['"soon"', "0", '"0.5s"', '"2d"', "true", '"-3s"']:
        path.write_text(f"[queue]\nlease = {bad}\n")
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert [p.key for p in info.value.problems] == ["queue.lease"], bad
        assert "1s to 24h" in str(info.value)
    assert isinstance(queue_store(load_config()), QueueStore)
    path.write_text('[queue]\nstore = "mysql://db.test/q"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [p.key for p in info.value.problems] == ["queue.store"]


def test_a_commit_on_one_node_nudges_the_other_nodes_manager(dsn):
    """app/clusterwake.py: the LISTEN loop calls the manager's nudge when any
    node commits, ends when the stop is set, and says nothing before that."""
    import asyncio

    from pigeon.app.clusterwake import wake_on_new_mail

    async def scenario(a, b) -> int:
        nudged, stop = asyncio.Event(), asyncio.Event()
        count = 0

        def nudge() -> None:
            nonlocal count
            count += 1
            nudged.set()

        task = asyncio.create_task(wake_on_new_mail(b, nudge, stop))
        for _ in range(100):  # bounded: until b listens (its connection exists)
            if b._listen is not None:
                break
            await asyncio.sleep(0.05)
        assert count == 0
        await asyncio.to_thread(commit_sample, a, 1)
        await asyncio.wait_for(nudged.wait(), 30)
        stop.set()
        await asyncio.wait_for(task, 30)
        return count

    with _store(dsn, "node-a", migrate=True) as a, _store(dsn, "node-b") as b:
        assert asyncio.run(scenario(a, b)) == 1
