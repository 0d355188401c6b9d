"""The PostgreSQL store's shortcuts for speed (docs/benchmarks.md, "Cluster on
PostgreSQL"): content this node committed is read from memory, the same
octets as the database's; removal forgets it; a store is not woken by its
own commits but is by another node's. Each test gets a fresh database on
the session's throw-away cluster (pigeon.testing.postgres)."""

from __future__ import annotations

import pytest

from pigeon.store.pg.recent import ITEM_MAX, RecentContent
from pigeon.testing.postgres import PostgresCluster
from pigeon.testing.store_kit import BIG, commit_sample, read_content, sample_content


@pytest.fixture
def dsn(postgres: PostgresCluster) -> str:
    return postgres.dsn(postgres.new_database())


def _store(dsn: str, node: str, **kw):
    from pigeon.store.pg.store import PgQueueStore

    return PgQueueStore(dsn, node=node, **kw)


def test_recent_content_is_bounded_oldest_first():
    recent = RecentContent(limit=10)
    recent.put("a", b"12345")
    recent.put("b", b"1234")
    recent.put("c", b"123")  # 12 octets: "a" goes
    assert recent.get("a") is None and recent.get("b") == b"1234" and recent.get("c") == b"123"
    recent.put("huge", b"x" * 11)  # bigger than the limit: never kept
    assert recent.get("huge") is None and len(recent) == 2
    recent.drop(["b", "unknown"])
    assert recent.get("b") is None and len(recent) == 1
    big = RecentContent()
    big.put("big", b"x" * (ITEM_MAX + 1))
    assert big.get("big") is None


def test_content_from_memory_is_the_databases(dsn):
    with _store(dsn, "node-a", migrate=True) as a, _store(dsn, "node-b") as b:
        small = commit_sample(a, 1)
        large = commit_sample(a, 2, size=3 * BIG)  # several rows: read from the database
        assert a._recent.get(small) is not None and a._recent.get(large) is None
        assert b._recent.get(small) is None, "another node keeps nothing"
        for qid, n, size in ((small, 1, None), (large, 2, 3 * BIG)):
            want = sample_content(n, size or 0)
            assert read_content(a, qid) == want
            assert read_content(b, qid) == want  # one query: size and first row
            assert a.content(qid).size == b.content(qid).size == len(want)
        a.remove_many([small])
        assert a._recent.get(small) is None


def test_a_store_is_not_woken_by_its_own_commits(dsn):
    with _store(dsn, "node-a", migrate=True) as a, _store(dsn, "node-b") as b:
        assert a.wait_for_mail(0) is False and b.wait_for_mail(0) is False  # listening
        commit_sample(a, 1)
        assert b.wait_for_mail(30) is True
        assert a.wait_for_mail(0.5) is False, "woken by its own commit"
        commit_sample(b, 2)
        assert a.wait_for_mail(30) is True
