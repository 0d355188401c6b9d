"""Qmgr.deliver() (qmgr/attempt.py) with FakeAgents and a FakeClock: grouping,
destinations, results, retries, expiry, notifications. One delivery run per `attempt()`."""

from __future__ import annotations

import asyncio

import pytest
from qmgr_env import AttemptEnv, make_qmgr

from pigeon.delivery.api import Outcome, RecipientResult
from pigeon.queue.model import RecipientStatus
from pigeon.testing.fakes import FakeReply

REFUSED = FakeReply("4.4.1", "connect to mx.remote.test[192.0.2.9]:25: Connection refused")
DAY = 86400.0
Env = AttemptEnv


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.store.close()


def status_blocks(msg) -> list:
    (ds,) = [p for p in msg.walk() if p.get_content_type() == "message/delivery-status"]
    return ds.get_payload()


# --- grouping -------------------------------------------------------------------------


def test_fifty_recipients_at_one_domain_is_one_request(env):
    qid = env.commit(*[f"u{i}@remote.test" for i in range(50)])
    env.attempt(qid)
    assert len(env.agent.requests) == 1 and len(env.agent.requests[0].recipients) == 50
    req = env.agent.requests[0]
    assert req.nexthop.transport == "smtp" and req.nexthop.domain == "remote.test"
    assert req.queue_id == qid and req.sender == "sender@example.test"
    assert env.store.list() == []  # all delivered, removed
    lines = env.log.for_id(qid)
    assert lines[0].fields == {
        "to": "u0@remote.test",
        "relay": "mx.fake.test[192.0.2.1]:25",
        "delay": 0.0,
        "dsn": "2.0.0",
        "status": "sent",
        "delays": "0.00/0.00/0.00",
    }  # queue wait/connection/transmission
    assert lines[0].detail == "250 2.0.0 Ok: queued"


def test_120_recipients_make_three_requests_and_two_domains_two(env):
    env.attempt(env.commit(*[f"u{i}@remote.test" for i in range(120)]))
    assert sorted(len(r.recipients) for r in env.agent.requests) == [20, 50, 50]
    env.agent.requests.clear()
    env.attempt(env.commit("a@one.test", "b@two.test", "c@one.test"))
    by_domain = {r.nexthop.domain: [x.address for x in r.recipients] for r in env.agent.requests}
    assert by_domain == {"one.test": ["a@one.test", "c@one.test"], "two.test": ["b@two.test"]}


def test_local_and_remote_in_one_message(env):
    qid = env.commit("alice@example.test", "x@remote.test")
    env.attempt(qid)
    assert env.agent.recipients() == ["x@remote.test"]
    assert [c.fields["relay"] for c in env.log.for_id(qid)[:2]] == [
        "local",
        "mx.fake.test[192.0.2.1]:25",
    ]


# --- destination concurrency and dead destinations -----------------------------------


def test_destination_concurrency_ceiling(tmp_path):
    e = Env(tmp_path, destination_concurrency=2, destination_recipients=1)

    async def scenario():
        e.agent.gate = asyncio.Event()
        qids = [e.commit(f"u{i}@remote.test") for i in range(3)] + [e.commit("o@other.test")]
        e.store.claim(qids)
        tasks = [asyncio.create_task(e.mgr.deliver(q)) for q in qids]
        for _ in range(500):  # loads run in worker threads
            await asyncio.sleep(0.01)
            if len(e.agent.requests) >= 3:
                break
        await asyncio.sleep(0.1)
        assert len(e.agent.requests) == 3  # 2 for remote.test + 1 other.test
        e.agent.gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert len(e.agent.requests) == 4
    assert {str(k.domain): v for k, v in e.agent.max_in_flight.items()} == {
        "remote.test": 2,
        "other.test": 1,
    }
    e.store.close()


def test_dead_destination_is_skipped_until_its_retry_time(env):
    env.agent.start_err = REFUSED
    qids = [env.commit(f"u{i}@remote.test") for i in range(5)]
    for q in qids[:3]:
        env.attempt(q)
    assert len(env.agent.requests) == 3  # three failures: dead now
    env.attempt(qids[3])
    assert len(env.agent.requests) == 3  # no attempt
    r = env.envelope(qids[3]).recipients[0]
    assert r.status is RecipientStatus.DEFERRED
    assert r.diagnostic == f"delivery temporarily suspended: {REFUSED.text}"
    assert env.log.for_id(qids[3])[0].fields["relay"] == "none"
    assert env.mgr.statistics()["destinations"]["dead"] == 1
    env.clock.advance(300)  # min_backoff later: probe
    env.agent.start_err = None
    env.attempt(qids[4])
    assert len(env.agent.requests) == 4 and env.mgr.statistics()["destinations"]["dead"] == 0


def test_bounced_recipient_with_peer_reached_does_not_kill_destination(env):
    env.agent.rcpt_err = {
        f"u{i}@remote.test": FakeReply("5.1.1", "550 5.1.1 no such user") for i in range(5)
    }
    for i in range(5):
        env.attempt(env.commit(f"u{i}@remote.test"))
    assert len(env.agent.requests) == 5


def test_an_agent_that_raises_does_not_kill_the_destination(env):
    """One message the agent cannot handle (it raised) is that message's
    problem: deferred 4.0.0, and other mail for the next hop still goes."""
    env.agent.start_err = ValueError("address cannot go on a command line")
    for i in range(5):
        env.attempt(env.commit(f"u{i}@remote.test"))
    assert len(env.agent.requests) == 5  # every one was tried
    assert env.mgr.statistics()["destinations"]["dead"] == 0
    env.agent.start_err = None
    qid = env.commit("ok@remote.test")
    env.attempt(qid)
    assert env.log.statuses(qid)[0] == "sent"


# --- results ---------------------------------------------------------------------------


def test_partial_results_each_on_its_own_and_only_deferred_retried(env):
    env.agent.rcpt_err = {
        "b@remote.test": FakeReply("4.2.2", "452 4.2.2 mailbox full"),
        "c@remote.test": FakeReply("5.1.1", "550 5.1.1 no such user"),
    }
    qid = env.commit("a@remote.test", "b@remote.test", "c@remote.test")
    env.attempt(qid)
    entry = env.store.list("deferred")[0]
    assert entry.queue_id == qid and entry.next_attempt == env.clock.now + 300
    st = {r.address: (r.status, r.dsn_status) for r in entry.envelope.recipients}
    assert st == {
        "a@remote.test": (RecipientStatus.DELIVERED, "2.0.0"),
        "b@remote.test": (RecipientStatus.DEFERRED, "4.2.2"),
        "c@remote.test": (RecipientStatus.BOUNCED, "5.1.1"),
    }
    assert env.log.statuses(qid) == ["sent", "deferred", "bounced"]
    assert env.others(qid) == []  # the bounce waits for the end
    env.agent.rcpt_err = {}
    env.clock.advance(300)
    env.attempt(qid)
    assert env.agent.requests[1].recipients[0].address == "b@remote.test"
    assert len(env.agent.requests[1].recipients) == 1
    (bounce,) = env.others(qid)  # now one report for c
    blocks = status_blocks(env.report(bounce))
    assert [b["Final-Recipient"] for b in blocks[1:]] == ["rfc822; c@remote.test"]
    assert blocks[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    assert blocks[1]["Remote-MTA"] == "dns; mx.fake.test"


def test_agent_exception_defers_every_recipient_with_400(env):
    env.agent.body_err = RuntimeError("boom")
    qid = env.commit("a@remote.test", "b@remote.test")
    env.attempt(qid)
    rs = env.envelope(qid).recipients
    assert [(r.status, r.dsn_status) for r in rs] == [(RecipientStatus.DEFERRED, "4.0.0")] * 2
    assert rs[0].diagnostic == "delivery agent error (RuntimeError)"


def test_missing_result_is_deferred(env):
    env.agent.results_fn = lambda req, r: RecipientResult(
        "someone@else.test", Outcome.DELIVERED, "2.0.0", "250 ok"
    )
    qid = env.commit("a@remote.test")
    env.attempt(qid)
    assert env.envelope(qid).recipients[0].diagnostic == "delivery agent returned no result"


def test_no_agent_for_transport_defers_430(tmp_path):
    e = Env(tmp_path)
    e.mgr = make_qmgr(e.cfg, e.store, e.log, clock=e.clock)  # no "smtp" agent
    qid = e.commit("a@remote.test")
    e.attempt(qid)
    r = e.envelope(qid).recipients[0]
    assert r.dsn_status == "4.3.0" and "no delivery agent for transport smtp" in r.diagnostic
    e.store.close()


def test_backoff_sequence_across_attempts(env):
    env.agent.start_err = REFUSED
    qid = env.commit("a@remote.test")
    env.mgr._sched.dests.failure_limit = 10**6  # keep the destination alive
    waits = []
    for _ in range(6):
        env.attempt(qid)
        entry = env.store.list("deferred")[0]
        waits.append(entry.next_attempt - env.clock.now)
        env.clock.advance(entry.next_attempt - env.clock.now)
    assert waits == [300, 600, 1200, 2400, 4000, 4000]
    assert env.envelope(qid).attempts == 6
