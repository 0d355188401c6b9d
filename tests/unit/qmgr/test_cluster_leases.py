"""Several queue managers on one PostgreSQL queue (issue 17): due work claimed
with claim_due(), leases renewed while a delivery runs, a dead node's claims
taken over once their lease expires, the sweep leaving other nodes' claims
alone, and the per-destination limit holding across nodes (advisory locks).

Each test gets a fresh database on the session's throw-away cluster
(pigeon.testing.postgres); the managers run in one event loop and share one
recording SMTP agent (pigeon.testing.fakes.FakeAgent), so its counts are the
cluster's: requests made and deliveries in flight at once per next hop."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from qmgr_env import commit, make_qmgr, two_mailboxes

from pigeon.qmgr.leases import renew_once
from pigeon.testing.fakes import FakeAgent, RecordingMaillog
from pigeon.testing.postgres import PostgresCluster
from pigeon.vocab import QueueState

WAIT = 30.0  # seconds: the bound of every wait (never reached when all is well)


@pytest.fixture
def dsn(postgres: PostgresCluster) -> str:
    return postgres.dsn(postgres.new_database())


def _store(dsn: str, node: str, **kw):
    from pigeon.store.pg.store import PgQueueStore

    store = PgQueueStore(dsn, node=node, **kw)
    store.open()
    return store


class _ClaimsDue:
    """A node's store that records its claim_due() calls and refuses due():
    the manager of a shared queue must never choose work apart from claiming it."""

    def __new__(cls, dsn: str, node: str, **kw):
        from pigeon.store.pg.store import PgQueueStore

        class Recording(PgQueueStore):
            calls: list[list[str]] = []

            def claim_due(self, now, limit=100):
                got = super().claim_due(now, limit)
                self.calls.append([q for q, _ in got])
                return got

            def due(self, now, limit=100):
                raise AssertionError("the manager of a shared queue called due()")

        store = Recording(dsn, node=node, **kw)
        store.calls = []
        store.open()
        return store


async def _until(check, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT:g}s: {what}")
        await asyncio.sleep(0.05)


async def _running(*mgrs):
    return [asyncio.create_task(m.run()) for m in mgrs]


async def _stop(tasks, *mgrs) -> None:
    for m in mgrs:
        await m.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT)


def _manager(tmp_path, store, agent, name: str, **settings):
    cfg = two_mailboxes(tmp_path / name)
    return make_qmgr(cfg, store, RecordingMaillog(), agents={"smtp": agent}, **settings)


def test_two_managers_claim_due_work_with_claim_due_and_deliver_each_once(dsn, tmp_path):
    a = _store(dsn, "node-a", migrate=True)
    b, c = _ClaimsDue(dsn, "node-b"), _ClaimsDue(dsn, "node-c")
    agent = FakeAgent()
    ids = [commit(a, f"user{i}@remote.test").queue_id for i in range(12)]
    # Four in delivery at once per node: both nodes scan for more, at once.
    mb = _manager(tmp_path, b, agent, "b", concurrency=4)
    mc = _manager(tmp_path, c, agent, "c", concurrency=4)

    async def scenario() -> None:
        tasks = await _running(mb, mc)
        await _until(lambda: len(agent.requests) >= 12 and not b.list(), "all delivered")
        await _stop(tasks, mb, mc)

    try:
        asyncio.run(scenario())
        delivered = sorted(r.queue_id for r in agent.requests)
        assert delivered == sorted(ids), "a message was delivered twice or not at all"
        claimed = [q for calls in (b.calls, c.calls) for call in calls for q in call]
        assert sorted(claimed) == sorted(ids), "not every entry came from claim_due()"
    finally:
        for s in (a, b, c):
            s.close()


def test_a_delivery_longer_than_the_lease_keeps_its_claim(dsn, tmp_path):
    """Node a's delivery lasts six leases; node b runs beside it releasing
    expired leases every lease/3 and scanning: without renewal it would take
    the entry over and deliver it a second time."""
    lease = 0.6
    a = _store(dsn, "node-a", migrate=True, lease=lease)
    b = _store(dsn, "node-b", lease=lease)
    agent = FakeAgent()
    qid = commit(a, "slow@remote.test").queue_id
    ma = _manager(tmp_path, a, agent, "a")
    mb = _manager(tmp_path, b, agent, "b", run_interval=0.2)

    async def scenario() -> None:
        agent.gate = asyncio.Event()
        tasks = await _running(ma)
        await _until(lambda: len(agent.requests) == 1, "node a started the delivery")
        tasks += await _running(mb)
        await asyncio.sleep(6 * lease)  # the delivery outlives its first lease six times
        assert len(agent.requests) == 1, "node b took over a claim that was being renewed"
        assert a.entry(qid).state == QueueState.ACTIVE
        agent.gate.set()
        await _until(lambda: a.entry(qid) is None, "delivered and removed")
        await _stop(tasks, ma, mb)

    try:
        asyncio.run(scenario())
        assert [r.queue_id for r in agent.requests] == [qid]
    finally:
        a.close()
        b.close()


def test_a_dead_nodes_claims_are_taken_over_when_their_lease_expires(dsn, tmp_path, caplog):
    """Node d claims two entries and dies (its store is closed: nothing renews
    them). Node a, started while those leases still hold (so its start-up
    recovery leaves them), releases them once they expire (its periodic
    expiry release) and delivers them."""
    lease = 1.5
    a = _store(dsn, "node-a", migrate=True, lease=lease)
    ids = [commit(a, f"u{i}@remote.test").queue_id for i in range(2)]
    dead = _store(dsn, "node-dead", lease=lease)
    assert sorted(q for q, _ in dead.claim_due(time.time(), 10)) == sorted(ids)
    dead.close()  # the node is gone: its claims are never renewed
    agent = FakeAgent()
    ma = _manager(tmp_path, a, agent, "a")

    async def scenario() -> None:
        tasks = await _running(ma)
        await _until(lambda: not a.list(), "taken over and delivered")
        await _stop(tasks, ma)

    caplog.set_level(logging.INFO, logger="pigeon.queue")
    try:
        asyncio.run(scenario())
        assert sorted(r.queue_id for r in agent.requests) == sorted(ids)
        assert "2 entries whose lease expired" in caplog.text, "not the periodic release"
    finally:
        a.close()


def test_the_sweep_leaves_another_live_nodes_claims_alone(dsn, tmp_path):
    a = _store(dsn, "node-a", migrate=True)
    b = _store(dsn, "node-b")
    qid = commit(a, "x@remote.test").queue_id
    assert b.claim([qid]) == [qid]  # node b is delivering it (lease 60 s)
    agent = FakeAgent()
    ma = _manager(tmp_path, a, agent, "a", run_interval=0.1)

    async def scenario() -> None:
        tasks = await _running(ma)
        await asyncio.sleep(1.0)  # ten run_intervals: ten sweeps
        await _stop(tasks, ma)

    try:
        asyncio.run(scenario())
        assert agent.requests == [], "node a delivered node b's entry"
        assert a.entry(qid).state == QueueState.ACTIVE and a.own_active() == []
        assert b.own_active() == [qid]
    finally:
        a.close()
        b.close()


def test_a_renewal_that_finds_its_claim_taken_over_says_so(dsn, caplog):
    a = _store(dsn, "node-a", migrate=True, lease=-1.0)  # a's claims are over at once
    b = _store(dsn, "node-b")
    qid = commit(a, "x@remote.test").queue_id
    other = commit(a, "y@remote.test").queue_id
    assert a.claim([qid, other]) == [qid, other]
    assert b.release_expired(time.time()) == sorted([qid, other])
    assert b.claim([qid]) == [qid]  # b took qid over; other waits, 'incoming'
    nudged = []
    caplog.set_level(logging.INFO, logger="pigeon.queue")
    try:
        lost, released = asyncio.run(renew_once(a, lambda: {qid}, lambda: nudged.append(1)))
        assert lost == [qid] and released == []
        assert f"queue_id={qid}: claim lost" in caplog.text
        assert b.own_active() == [qid], "the renewal took the claim back from node b"
        assert not nudged
    finally:
        a.close()
        b.close()


def test_the_destination_limit_holds_across_nodes(dsn, tmp_path):
    """destination_concurrency = 2 on each of two nodes: without the
    cluster-wide slots the shared agent would see 4 deliveries at once."""
    a = _store(dsn, "node-a", migrate=True)
    b = _store(dsn, "node-b")
    agent = FakeAgent()
    ids = [commit(a, f"u{i}@remote.test").queue_id for i in range(8)]
    # Four messages in delivery per node: each node claims half of them.
    ma = _manager(tmp_path, a, agent, "a", concurrency=4, destination_concurrency=2)
    mb = _manager(tmp_path, b, agent, "b", concurrency=4, destination_concurrency=2)

    async def scenario() -> None:
        agent.gate = asyncio.Event()
        tasks = await _running(ma, mb)
        await _until(lambda: len(a.own_active()) == len(b.own_active()) == 4, "both have work")
        await _until(lambda: sum(agent.in_flight.values()) == 2, "two deliveries started")
        await asyncio.sleep(1.0)  # the others wait for a slot (they poll every <= 1 s)
        assert max(agent.max_in_flight.values()) == 2
        agent.gate.set()
        await _until(lambda: not a.list(), "all delivered")
        await _stop(tasks, ma, mb)

    try:
        asyncio.run(scenario())
        assert max(agent.max_in_flight.values()) == 2, agent.max_in_flight
        assert sorted(r.queue_id for r in agent.requests) == sorted(ids)
    finally:
        a.close()
        b.close()


def test_advisory_slots_are_freed_when_a_node_dies(dsn):
    a = _store(dsn, "node-a", migrate=True)
    b = _store(dsn, "node-b")
    try:
        sa, sb = a.destination_slots(), b.destination_slots()
        got = [sa.try_acquire("smtp:remote.test", 2) for _ in range(2)]
        assert None not in got and {s.number for s in got} == {0, 1}
        assert sb.try_acquire("smtp:remote.test", 2) is None, "a third slot of two"
        other = sb.try_acquire("smtp:other.test", 2)
        assert other is not None, "another destination has slots of its own"
        sa.release(got[0])
        mine = sb.try_acquire("smtp:remote.test", 2)
        assert mine is not None and mine.number == 0
        sb.release(mine)
        a.close()  # node a dies: PostgreSQL ends its session and its locks
        deadline = time.monotonic() + WAIT
        while (mine := sb.try_acquire("smtp:remote.test", 2)) is None:
            assert time.monotonic() < deadline, "the dead node's slot was never freed"
            time.sleep(0.05)
        assert mine.number in (0, 1)
    finally:
        a.close()
        b.close()


def test_slots_given_back_are_free_for_the_other_nodes_after_many_rounds(dsn):
    """A node that takes and gives back slots many times leaves none held.

    psycopg prepares a statement run five times, and PostgreSQL's generic
    plan orders the filter by cost: the lock function ran before the "not
    one of mine" test, took a slot this node held a second time (advisory
    locks are re-entrant), and the one unlock left it held for good. Every
    other node then waited for it forever (the cluster benchmark's
    stranded mail)."""
    a = _store(dsn, "node-a", migrate=True)
    b = _store(dsn, "node-b")
    try:
        sa, sb = a.destination_slots(), b.destination_slots()
        for _ in range(20):
            held = [sa.try_acquire("smtp:remote.test", 4) for _ in range(3)]
            assert None not in held
            for s in held:
                sa.release(s)
        got = [sb.try_acquire("smtp:remote.test", 4) for _ in range(4)]
        assert None not in got, "a slot node a gave back is still held"
    finally:
        a.close()
        b.close()
