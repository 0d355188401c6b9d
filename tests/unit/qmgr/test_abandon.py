"""The stop's part in the queue manager (qmgr/inflight.py): `abandon()` cancels the
deliveries in progress at once, logs one line each (queue id, recipients, next hop,
"may be delivered twice" past the agent's hand-over) and leaves them 'active' for
the recovery of the next start."""

from __future__ import annotations

import asyncio
import threading

from qmgr_env import commit, maildir_files, two_mailboxes

from pigeon.delivery.api import DeliveryRequest, RecipientResult, handed_over
from pigeon.delivery.maildir import deliver_batch
from pigeon.vocab import QueueState


class HangingAgent:
    """Never answers; for recipients at twice.test it first says the next hop
    may already hold the message (the SMTP agent does at the 354)."""

    def __init__(self) -> None:
        self.calls = 0
        self.cancelled = 0

    async def deliver(self, request: DeliveryRequest) -> list[RecipientResult]:
        if any(r.address.endswith("@twice.test") for r in request.recipients):
            handed_over()
        self.calls += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("never answers")


def test_abandon_cancels_logs_each_attempt_and_leaves_the_entries_active(tmp_path, queue_world):
    agent = HangingAgent()
    cfg = two_mailboxes(tmp_path)
    store, log, mgr = queue_world(cfg, agents={"smtp": agent})
    silent = commit(store, "a@silent.test", "b@silent.test")
    twice = commit(store, "c@twice.test")

    async def scenario() -> int:
        running = asyncio.ensure_future(mgr.run())
        mgr.submit(silent)
        mgr.submit(twice)
        for _ in range(500):  # bounded: 5 s
            if agent.calls == 2:
                break
            await asyncio.sleep(0.01)
        assert agent.calls == 2
        abandoned = await mgr.abandon()
        await asyncio.wait_for(running, 10)  # the manager's loop ends too
        return abandoned

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == 2
    assert agent.cancelled == 2
    lines = {c.queue_id: c for c in log.calls if c.fields.get("status") == "abandoned"}
    assert lines.keys() == {silent.queue_id, twice.queue_id}
    assert lines[silent.queue_id].fields == {
        "recipients": "a@silent.test,b@silent.test",
        "relay": "smtp:silent.test",
        "status": "abandoned",
    }
    assert lines[silent.queue_id].detail == ("pigeon is stopping: tried again after the next start")
    assert lines[twice.queue_id].fields["relay"] == "smtp:twice.test"
    assert lines[twice.queue_id].detail.endswith("it may be delivered twice")
    # Nothing recorded as an outcome: both wait in the queue for the next start.
    states = store.states([silent.queue_id, twice.queue_id])
    assert set(states.values()) == {QueueState.ACTIVE}
    assert [c for c in log.calls if c.fields.get("status") in ("deferred", "sent")] == []


def test_abandon_with_nothing_in_progress_abandons_nothing(tmp_path, queue_world):
    store, log, mgr = queue_world(two_mailboxes(tmp_path))

    async def scenario() -> int:
        running = asyncio.ensure_future(mgr.run())
        await asyncio.sleep(0)
        abandoned = await mgr.abandon()
        await asyncio.wait_for(running, 10)
        return abandoned

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == 0
    assert log.calls == []


def test_a_maildir_write_under_way_is_let_finish_not_delivered_twice(tmp_path, queue_world):
    """Local disk work does not wait on a peer: abandoning it would only make the
    next start write the message a second time."""
    started, release = threading.Event(), threading.Event()

    def slow_writer(jobs):
        started.set()
        assert release.wait(10)
        return deliver_batch(jobs, fsync=False)

    cfg = two_mailboxes(tmp_path)
    store, log, mgr = queue_world(cfg, writer=slow_writer)
    env = commit(store, "alice@example.test")

    async def scenario() -> int:
        running = asyncio.ensure_future(mgr.run())
        mgr.submit(env)
        assert await asyncio.to_thread(started.wait, 5)
        stopping = asyncio.ensure_future(mgr.abandon())
        release.set()  # the write ends while the stop waits for it
        abandoned = await asyncio.wait_for(stopping, 10)
        await asyncio.wait_for(running, 10)
        return abandoned

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == 0
    assert len(maildir_files(cfg, "alice")) == 1
    assert "removed" in log.statuses(env.queue_id)  # the outcome is recorded: not again
    assert [c for c in log.calls if c.fields.get("status") == "abandoned"] == []
