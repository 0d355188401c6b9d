"""Qmgr fast path: fresh mail from submit() without database reads,
scans only when needed, batched removal, operator actions on fresh mail."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from qmgr_env import commit, make_qmgr, open_store, removed, two_mailboxes

from pigeon.qmgr.notify import Plan
from pigeon.qmgr.results import Settlement
from pigeon.queue.model import Envelope
from pigeon.testing.fakes import FakeAgent, FakeReply, FaultyStore, RecordingMaillog
from pigeon.vocab import StoreError

DEFERRED = FakeReply("4.4.1", "connect to mx.remote.test[192.0.2.9]:25: Connection refused")


class Env:
    def __init__(self, tmp: Path, **kw) -> None:
        self.cfg = two_mailboxes(
            tmp, aliases={"team@example.test": ("alice@example.test", "bob@example.test")}
        )
        self.store = open_store(self.cfg)
        self.spy = FaultyStore(self.store)  # counts the manager's store calls
        self.log = RecordingMaillog()
        self.agent = FakeAgent()
        kw.setdefault("run_interval", 30.0)
        self.mgr = make_qmgr(self.cfg, self.spy, self.log, agents={"smtp": self.agent}, **kw)
        self.task: asyncio.Task | None = None

    def commit(self, *rcpts: str, sender: str = "sender@remote.test") -> Envelope:
        """Commit like the SMTP side does; the Envelope is what it hands to submit()."""
        return commit(self.store, *rcpts, sender=sender, body=b"Subject: x\r\n\r\nhi\r\n")

    def maildir(self, local: str) -> list[Path]:
        new = self.cfg.mailbox_root / "example.test" / local / "new"
        return sorted(new.iterdir()) if new.exists() else []

    def state(self, qid: str) -> str | None:
        entry = self.store.entry(qid)
        return entry.state if entry is not None else None

    def content_gone(self, qid: str) -> bool:
        try:
            self.store.content(qid).open().close()
        except StoreError:
            return True
        return False

    async def start(self) -> None:
        """Run the manager and wait until its start-up scan is over."""
        self.task = asyncio.create_task(self.mgr.run())
        await self.until(lambda: not self.mgr._sched.scan_needed and self.spy.count("due") >= 1)
        await asyncio.sleep(0.05)
        self.spy.reset()

    async def until(self, cond, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, "condition not reached"
            assert self.task is None or not self.task.done(), self.task
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        await self.mgr.stop()
        if self.task is not None:
            await self.task


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.store.close()


def test_submitted_mail_is_delivered_without_reading_the_database(env):
    async def scenario():
        await env.start()
        envs = [env.commit("alice@example.test", "bob@example.test") for _ in range(20)]
        for e in envs:
            env.mgr.submit(e)
        await env.until(lambda: removed(env.log, *(e.queue_id for e in envs)))
        await env.stop()
        return envs

    envs = asyncio.run(scenario())
    assert len(env.maildir("alice")) == 20 and len(env.maildir("bob")) == 20
    assert env.store.list() == []
    for name in ("due", "load", "next_retry", "move"):
        assert env.spy.count(name) == 0, name
    # One conditional 'incoming' -> 'active' claim per batch, each id once.
    claimed = [q for args in env.spy.calls["claim"] for q in args[0]]
    assert sorted(claimed) == sorted(e.queue_id for e in envs)
    # Removal through remove_many (one transaction per batch): every id once.
    ids = [q for args in env.spy.calls["remove_many"] for q in args[0]]
    assert sorted(ids) == sorted(e.queue_id for e in envs)
    assert len(env.spy.calls["remove_many"]) < len(envs)  # batched
    first = env.log.for_id(envs[0].queue_id)
    assert [c.fields["status"] for c in first] == ["sent", "sent", "removed"]


def test_aliases_and_bounces_work_on_the_fast_path(env):
    async def scenario():
        await env.start()
        team = env.commit("team@example.test")
        ghost = env.commit("nobody@example.test")  # no such mailbox: 5.1.1
        env.mgr.submit(team)
        env.mgr.submit(ghost)
        await env.until(lambda: removed(env.log, team.queue_id, ghost.queue_id))
        # The bounce is enqueued by the manager, found by the scan its nudge asks for.
        await env.until(lambda: len(env.agent.requests) == 1)
        await env.stop()
        return team, ghost

    team, ghost = asyncio.run(scenario())
    sent = [c.fields for c in env.log.for_id(team.queue_id) if c.fields["status"] == "sent"]
    assert [(f["to"], f["orig_to"]) for f in sent] == [
        ("alice@example.test", "team@example.test"),
        ("bob@example.test", "team@example.test"),
    ]
    assert env.log.statuses(ghost.queue_id) == ["bounced", "", "removed"]
    assert env.agent.recipients() == ["sender@remote.test"]  # the DSN, by the scan path


def test_fifo_overflow_leaves_mail_to_a_scan(tmp_path):
    env = Env(tmp_path, fresh_limit=2)

    async def scenario():
        await env.start()
        # No await between the commits and the submits: the manager cannot
        # run, so the FIFO really overflows.
        envs = [env.commit("alice@example.test") for _ in range(5)]
        for e in envs:
            env.mgr.submit(e)
        assert len(env.mgr._sched.fresh) == 2 and env.mgr._sched.scan_needed
        await env.until(lambda: removed(env.log, *(e.queue_id for e in envs)))
        await env.stop()

    try:
        asyncio.run(scenario())
        assert len(env.maildir("alice")) == 5  # each exactly once
        assert env.spy.count("due") >= 1 and env.spy.count("load") == 5
        assert env.store.list() == []
    finally:
        env.store.close()


def test_nudge_scans_for_mail_committed_elsewhere(env):
    async def scenario():
        await env.start()
        e = env.commit("bob@example.test")  # e.g. a worker process
        await asyncio.sleep(0.1)
        assert env.maildir("bob") == []  # no scan without a reason
        env.mgr.nudge()
        await env.until(lambda: removed(env.log, e.queue_id))
        await env.stop()

    asyncio.run(scenario())
    assert env.spy.count("due") >= 1 and env.spy.count("load") == 1


def test_a_late_submit_of_mail_a_scan_took_is_ignored(env):
    async def scenario():
        await env.start()
        e = env.commit("bob@example.test")
        env.mgr.nudge()  # the scan takes it first
        await env.until(lambda: removed(env.log, e.queue_id))
        env.mgr.submit(e)  # ... then its submit arrives
        await asyncio.sleep(0.2)
        await env.stop()
        return e

    e = asyncio.run(scenario())
    assert len(env.maildir("bob")) == 1
    assert env.log.statuses(e.queue_id) == ["sent", "removed"]  # one attempt


def test_a_scan_while_fresh_mail_is_in_flight_takes_it_once(env):
    async def scenario():
        await env.start()
        env.agent.gate = asyncio.Event()
        e = env.commit("x@remote.test")
        env.mgr.submit(e)
        await env.until(lambda: len(env.agent.requests) == 1)
        assert env.state(e.queue_id) == "active"  # as the scan path marks it
        env.mgr.nudge()
        await env.until(lambda: env.spy.count("due") >= 1)
        env.mgr.submit(e)  # a duplicate submit, for good measure
        await asyncio.sleep(0.1)
        env.agent.gate.set()
        await env.until(lambda: removed(env.log, e.queue_id))
        await env.stop()

    asyncio.run(scenario())
    assert len(env.agent.requests) == 1


def test_hold_and_delete_of_fresh_mail_in_flight_wait_for_the_attempt(env):
    async def scenario():
        await env.start()
        env.agent.gate = asyncio.Event()
        env.agent.start_err = DEFERRED
        held, deleted = env.commit("x@remote.test"), env.commit("y@remote.test")
        env.mgr.submit(held)
        env.mgr.submit(deleted)
        await env.until(lambda: len(env.agent.requests) == 2)
        assert (await env.mgr.hold([held.queue_id])).pending == [held.queue_id]
        assert (await env.mgr.delete([deleted.queue_id])).pending == [deleted.queue_id]
        assert sorted((await env.mgr.hold(None)).pending) == sorted(
            [held.queue_id, deleted.queue_id]
        )
        assert env.state(held.queue_id) == "active"
        env.agent.gate.set()
        await env.until(
            lambda: env.state(held.queue_id) == "hold" and env.state(deleted.queue_id) is None
        )
        await env.stop()
        return held, deleted

    held, deleted = asyncio.run(scenario())
    assert env.log.statuses(held.queue_id) == ["deferred", "hold"]
    assert env.log.statuses(deleted.queue_id) == ["deferred", "removed"]
    assert env.content_gone(deleted.queue_id)


def test_hold_of_fresh_mail_not_yet_started_stops_it(tmp_path):
    e = Env(tmp_path, concurrency=1)

    async def scenario():
        await e.start()
        e.agent.gate = asyncio.Event()
        first, waiting = e.commit("x@remote.test"), e.commit("alice@example.test")
        e.mgr.submit(first)
        await e.until(lambda: len(e.agent.requests) == 1)
        e.mgr.submit(waiting)  # no free slot: it waits in the FIFO
        assert list(e.mgr._sched.fresh) == [waiting]
        assert (await e.mgr.hold([waiting.queue_id])).done == [waiting.queue_id]
        e.agent.gate.set()
        await e.until(lambda: removed(e.log, first.queue_id))
        # Its submit() arriving (again) after the hold changes nothing either.
        e.mgr.submit(waiting)
        await asyncio.sleep(0.2)
        await e.stop()
        return waiting

    try:
        waiting = asyncio.run(scenario())
        assert e.maildir("alice") == []
        assert e.state(waiting.queue_id) == "hold"
    finally:
        e.store.close()


def test_submit_after_an_operator_action_on_its_row_is_ignored(env):
    """The window between the commit and the submit(): an operator who
    deleted the new row meanwhile wins."""

    async def scenario():
        await env.start()
        e = env.commit("alice@example.test")
        assert (await env.mgr.delete([e.queue_id])).done == [e.queue_id]
        env.mgr.submit(e)
        await asyncio.sleep(0.2)
        await env.stop()
        return e

    e = asyncio.run(scenario())
    assert env.maildir("alice") == [] and env.store.list() == []
    assert env.log.statuses(e.queue_id) == ["removed"]  # no attempt


def test_deferred_mail_is_retried_when_due_without_polling(tmp_path):
    e = Env(tmp_path, min_backoff=0.3, max_backoff=0.3)

    async def scenario():
        await e.start()
        e.agent.start_err = DEFERRED
        m = e.commit("x@remote.test")
        e.mgr.submit(m)
        await e.until(lambda: e.log.statuses(m.queue_id) == ["deferred"])
        e.agent.start_err = None
        started = time.monotonic()
        await e.until(lambda: removed(e.log, m.queue_id))  # no nudge: the cached retry time
        await e.stop()
        return time.monotonic() - started

    try:
        waited = asyncio.run(scenario())
        assert waited < 5  # run_interval is 30 s
        assert e.spy.count("due") <= 3  # the cached retry time, no polling
    finally:
        e.store.close()


def test_batched_removal_removes_durably_before_logging(env):
    """Messages finishing together share one removal call; each logs
    "removed" only once its row and file are gone."""
    seen: list[tuple[str, bool, bool]] = []

    class CheckingLog(RecordingMaillog):
        def log(self, queue_id, fields, detail=None):
            if fields.get("status") == "removed":
                gone = env.store.entry(queue_id) is None
                seen.append((queue_id, gone, env.content_gone(queue_id)))
            super().log(queue_id, fields, detail)

    env.mgr = make_qmgr(env.cfg, env.spy, CheckingLog(), agents={"smtp": env.agent})
    envs = [env.commit("alice@example.test") for _ in range(10)]
    done = [Settlement(e, [], Plan([], []), True, 0.0, time.time()) for e in envs]

    async def settle_all():
        return await asyncio.gather(*(env.mgr._journal.settle(o) for o in done))

    assert asyncio.run(settle_all()) == [True] * 10
    ids = sorted(e.queue_id for e in envs)
    assert [sorted(args[0]) for args in env.spy.calls["remove_many"]] == [ids]
    assert sorted(seen) == [(q, True, True) for q in ids]
    # And through deliveries:
    seen.clear()
    qids = [env.commit("bob@example.test").queue_id for _ in range(5)]
    env.store.claim(qids)

    async def deliver_all():
        await asyncio.gather(*(env.mgr.deliver(q) for q in qids))

    asyncio.run(deliver_all())
    assert sorted(seen) == [(q, True, True) for q in sorted(qids)]


def test_next_retry_sees_deferred_rows_only(env):
    now = time.time()
    assert env.store.next_retry() is None
    for _ in range(3):
        env.commit("alice@example.test")  # 'incoming', due now
    assert env.store.next_retry() is None
    late, early = env.commit("a@remote.test"), env.commit("b@remote.test")
    env.store.move([late.queue_id], "deferred", now + 100, from_states=("incoming",))
    env.store.move([early.queue_id], "deferred", now + 50, from_states=("incoming",))
    assert env.store.next_retry() == now + 50
    env.store.move([early.queue_id], "hold", from_states=("deferred",))
    assert env.store.next_retry() == now + 100


def test_a_scan_loads_envelopes_in_its_own_call_and_survives_a_failed_load(env):
    """The scan loads what it takes in the same worker-thread call; a load
    that fails there (not corrupt: e.g. an I/O error) is retried by the
    delivery itself."""

    async def scenario():
        await env.start()
        env.spy.fail("load", 1, StoreError("disk I/O error"))
        ids = [env.commit("alice@example.test").queue_id for _ in range(3)]
        env.mgr.nudge()
        await env.until(lambda: removed(env.log, *ids))
        await env.stop()

    asyncio.run(scenario())
    assert env.spy.count("load") == 4 and len(env.maildir("alice")) == 3
    assert env.mgr.statistics()["errors"] == 0
