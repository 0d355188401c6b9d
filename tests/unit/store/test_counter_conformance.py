"""The abuse controls' counters on both backends (pigeon/policy/abusestate.py,
the embedded abuse.db; pigeon/policy/sharedstate.py, PostgreSQL), and what
only the shared one promises: rate limits and greylisting counted across
nodes. Syncs are made by hand (`flush()`; the background interval is an
hour), and times are plain numbers, so nothing here depends on timing."""

from __future__ import annotations

import pytest

from pigeon.policy.abusestate import AbuseState
from pigeon.policy.ratelimit import RateLimiter

HOUR = 3600.0
T0 = 1_000_000.0


def _embedded(request, tmp_path):
    return lambda: AbuseState(tmp_path / "abuse.db", flush_interval=HOUR)


def _postgresql(request, tmp_path):
    from pigeon.policy.sharedstate import PgAbuseState
    from pigeon.store.pg.accounts import PgAccountStore

    cluster = request.getfixturevalue("postgres")
    dsn = cluster.dsn(cluster.new_database())
    PgAccountStore(dsn, migrate=True).open().close()  # applies every migration
    return lambda: PgAbuseState(dsn, time_unit=60.0, flush_interval=HOUR)


BACKENDS = {"embedded": _embedded, "postgresql": _postgresql}


@pytest.fixture(params=sorted(BACKENDS))
def make(request, tmp_path):
    return BACKENDS[request.param](request, tmp_path)


def test_entries_outlive_a_restart(make):
    state = make().open()
    state.table("greylist").put("net a b", (T0, 0.0, T0))
    state.table("greylist").put("gone", (1.0, 2.0, 3.0))
    state.table("greylist").delete("gone")
    assert RateLimiter(state.table("bucket"), 60.0).take([("conn:192.0.2.1", 3)], T0) is None
    state.close()
    again = make().open()
    try:
        assert again.table("greylist").get("net a b") == (T0, 0.0, T0)
        assert again.table("greylist").get("gone") is None
        assert again.table("bucket").get("conn:192.0.2.1")[:2] == (2.0, T0)
    finally:
        again.close()


def test_a_bucket_refuses_past_its_rate_and_refills(make):
    state = make().open()
    try:
        limiter = RateLimiter(state.table("bucket"), 60.0)
        assert all(limiter.take([("k", 3)], T0) is None for _ in range(3))
        assert limiter.take([("k", 3)], T0) == "k"
        assert limiter.take([("k", 3)], T0 + 20) is None  # 3 per 60 s: one token back
    finally:
        state.close()


def test_memory_is_bounded(make):
    state = make()
    state.max_entries = 3
    state.open()
    try:
        table = state.table("greylist-client")
        for i in range(5):
            table.put(f"net{i}", (1.0, T0, 0.0))
        assert len(table) == 3 and table.get("net0") is None and table.get("net4")
    finally:
        state.close()


# --- the shared store only: two nodes -----------------------------------------------


@pytest.fixture
def nodes(request, tmp_path):
    opener = _postgresql(request, tmp_path)
    a, b = opener().open(), opener().open()
    yield a, b
    a.close()
    b.close()


def test_takes_on_two_nodes_add_up(nodes):
    a, b = nodes
    on_a = RateLimiter(a.table("bucket"), 60.0)
    on_b = RateLimiter(b.table("bucket"), 60.0)
    bucket = [("mail:192.0.2.7", 10)]
    # Both nodes take 4 before they sync: each alone is within the rate.
    assert all(on_a.take(bucket, T0) is None for _ in range(4))
    assert all(on_b.take(bucket, T0) is None for _ in range(4))
    a.flush()
    b.flush()
    a.flush()
    # 8 of 10 taken cluster-wide: 2 left on either node, then refused.
    assert on_a.tokens("mail:192.0.2.7", 10, T0) == pytest.approx(2.0)
    assert on_b.take(bucket, T0) is None and on_b.take(bucket, T0) is None
    assert on_b.take(bucket, T0) == "mail:192.0.2.7"
    b.flush()
    a.flush()
    assert on_a.take(bucket, T0) == "mail:192.0.2.7", "node a lets through what b used"
    assert on_a.take(bucket, T0 + 6) is None, "refilled at 10 per 60 s"


def test_takes_beyond_the_rate_before_a_sync_leave_an_empty_bucket(nodes):
    a, b = nodes
    bucket = [("conn:192.0.2.9", 5)]
    for node in (a, b):
        limiter = RateLimiter(node.table("bucket"), 60.0)
        assert all(limiter.take(bucket, T0) is None for _ in range(4))
    a.flush()
    b.flush()
    a.flush()
    for node in (a, b):
        assert RateLimiter(node.table("bucket"), 60.0).take(bucket, T0) == "conn:192.0.2.9"


def test_a_greylisted_triplet_is_known_on_the_other_node(nodes):
    a, b = nodes
    a.table("greylist").put("192.0.2.0/24 s@x r@y", (T0, 0.0, T0))
    assert b.table("greylist").get("192.0.2.0/24 s@x r@y") is None  # not synced yet
    a.flush()
    b.flush()
    assert b.table("greylist").get("192.0.2.0/24 s@x r@y") == (T0, 0.0, T0)
    a.table("greylist").put("192.0.2.0/24 s@x r@y", (T0, T0 + 300, T0 + 300))
    a.flush()
    b.flush()
    assert b.table("greylist").get("192.0.2.0/24 s@x r@y") == (T0, T0 + 300, T0 + 300)


def test_an_unreachable_database_keeps_counting_in_memory(postgres):
    from pigeon.policy.sharedstate import PgAbuseState
    from pigeon.testing.live import free_port

    state = PgAbuseState(
        f"postgresql://nobody@127.0.0.1:{free_port()}/none", time_unit=60.0, flush_interval=HOUR
    ).open()
    try:
        limiter = RateLimiter(state.table("bucket"), 60.0)
        assert limiter.take([("k", 1)], T0) is None and limiter.take([("k", 1)], T0) == "k"
    finally:
        state.close()
