"""Queue operations through the control socket against a real store and queue manager."""

from __future__ import annotations

import time

import pytest

from pigeon.admin.client import ControlClient, RemoteError
from pigeon.qmgr.operator import ADMIN_BOUNCE_STATUS
from pigeon.queue.model import RecipientStatus
from pigeon.testing.storage import content_bytes
from pigeon.vocab import STATES, QueueState, StoreError


def client(b) -> ControlClient:
    return ControlClient(b.config.control_socket)


def state(b, qid):
    e = b.store.entry(qid)
    return e.state if e else None


def test_list_filters_and_show(backend):
    b = backend
    q1 = b.commit("a@example.org", sender="alice@example.test", age=7200)
    q2 = b.commit("b@other.example", sender="")
    c = client(b)
    ids = [e["id"] for e in c.call("list", filters={})["entries"]]
    assert ids == [q1, q2]
    assert [e["id"] for e in c.call("list", filters={"domain": "example.org"})["entries"]] == [q1]
    assert [e["id"] for e in c.call("list", filters={"sender": "<>"})["entries"]] == [q2]
    assert [e["id"] for e in c.call("list", filters={"older_than": 3600})["entries"]] == [q1]
    assert c.call("list", filters={"state": "hold"})["entries"] == []
    shown = c.call("show", id=q1)
    assert shown["sender"] == "alice@example.test"
    assert "Subject: test " + q1 in shown["headers"]
    assert shown["envelope"]["recipients"][0]["address"] == "a@example.org"
    with pytest.raises(RemoteError, match="no such message"):
        c.call("show", id="0000NOTTHERE")


def test_hold_release_requeue_delete(backend):
    b = backend
    q1, q2 = b.commit("a@example.org"), b.commit("b@example.org", state="deferred")
    c = client(b)
    assert c.call("hold", ids=[q1, q2]) == {
        "done": [q1, q2],
        "pending": [],
        "skipped": [],
        "unknown": [],
    }
    assert state(b, q1) == state(b, q2) == "hold"
    again = c.call("hold", ids=[q1])
    assert again["skipped"] == [q1] and again["unknown"] == []  # already held, but queued
    before = time.time()
    assert c.call("release", all=True)["done"] == [q1, q2]
    entry = b.store.entry(q2)
    assert entry.state == "deferred" and entry.next_attempt >= before - 1
    b.store.move([q2], QueueState.DEFERRED, time.time() + 9999, from_states=STATES)
    assert c.call("requeue", ids=[q2])["done"] == [q2]
    assert b.store.entry(q2).state == "incoming"
    assert c.call("delete", ids=[q1, "0000MISSING"]) == {
        "done": [q1],
        "pending": [],
        "skipped": ["0000MISSING"],
        "unknown": ["0000MISSING"],
    }
    assert state(b, q1) is None
    with pytest.raises(StoreError):
        content_bytes(b.store, q1)
    assert [c.detail for c in b.maillog.for_id(q1)] == [
        "on hold by administrator",
        "released from hold",
        "deleted by administrator",
    ]


def test_actions_check_their_arguments(backend):
    c = client(backend)
    with pytest.raises(RemoteError, match="give one or more queue ids"):
        c.call("hold")
    with pytest.raises(RemoteError, match="explicit queue ids"):
        c.call("bounce", all=True)
    with pytest.raises(RemoteError, match="not a queue id"):
        c.call("delete", ids=["../../etc/passwd"])


def test_bounce_returns_to_sender_with_a_dsn(backend):
    b = backend
    qid = b.commit("a@example.org", "b@example.org", sender="alice@example.test")
    result = client(b).call("bounce", ids=[qid])
    assert result["done"] == [qid]
    assert state(b, qid) is None
    (report,) = b.store.list()
    assert report.envelope.sender == "" and report.envelope.dsn_kind == "failure"
    assert [r.address for r in report.envelope.recipients] == ["alice@example.test"]
    text = content_bytes(b.store, report.queue_id)
    assert b"Status: " + ADMIN_BOUNCE_STATUS.encode() in text
    assert b"administrator" in text
    assert "bounced" in b.maillog.statuses(qid)


def test_action_on_a_message_being_delivered_waits_for_the_attempt(backend):
    b = backend
    qid = b.commit("a@example.org")
    b.store.claim([qid])
    b.manager._sched.started([qid])  # as run() does while an attempt is running
    assert client(b).call("hold", ids=[qid])["pending"] == [qid]
    assert state(b, qid) == "active"
    # The attempt ends (deferred), then the manager applies the pending hold.
    b.manager._sched.finished(qid)
    b.store.move([qid], "deferred", time.time() + 300, from_states=("active",))
    b.call(b.manager._operator.after_delivery(qid))
    assert state(b, qid) == "hold"


def test_flush_makes_deferred_mail_due_and_revives_destinations(backend):
    b = backend
    q1 = b.commit("a@down.example", state="deferred")
    q2 = b.commit("b@other.example", state="deferred")
    dests = b.manager._sched.dests
    from pigeon.vocab import Nexthop

    nh = Nexthop("smtp", "down.example")
    for _ in range(5):
        dests.record(nh, time.time(), reached=False, reason="connection refused")
    assert dests.is_dead(nh, time.time())
    result = client(b).call("flush", domain="down.example")
    assert result == {"done": [q1], "destinations_revived": 1}
    assert not dests.is_dead(nh, time.time())
    assert b.store.entry(q1).next_attempt <= time.time()
    assert b.store.entry(q2).next_attempt > time.time()
    assert client(b).call("flush")["done"] == [q1, q2]


def test_status_and_nudge_logs_local_submissions(backend):
    b = backend
    qid = b.commit("a@example.test", sender="root@example.test")
    s = client(b).call("status")
    assert s["queue"]["incoming"] == 1 and s["server"]["sessions"] == 2
    assert s["uptime"] >= 0 and s["pid"] > 0
    client(b).call("nudge", ids=[qid], uid=1000)
    (line,) = b.maillog.for_id(qid)
    assert line.fields["uid"] == 1000 and line.fields["from"] == "root@example.test"
    assert line.detail == "queued"


def test_recipient_statuses_survive_a_list(backend):
    b = backend
    qid = b.commit("a@example.org")
    env = b.store.load(qid)
    env.recipients[0].status = RecipientStatus.DEFERRED
    env.recipients[0].diagnostic = "connect to mx: Connection refused"
    env.recipients[0].dsn_status = "4.4.1"
    env.recipients[0].last_attempt = time.time()
    b.store.update(env, "deferred", time.time() + 60)
    (e,) = client(b).call("list", filters={"state": "deferred"})["entries"]
    assert e["reason"] == "4.4.1 connect to mx: Connection refused"


def test_reload_without_a_reloader_is_refused_plainly(backend):
    with pytest.raises(RemoteError, match="this pigeon cannot reload its configuration"):
        client(backend).call("reload")


def test_restart_without_a_restarter_is_refused_plainly(backend):
    with pytest.raises(RemoteError, match="this pigeon cannot restart itself"):
        client(backend).call("restart")


def test_stop_without_a_stopper_is_refused_plainly(backend):
    with pytest.raises(RemoteError, match="cannot be stopped through its control socket"):
        client(backend).call("stop")


def test_reports_when_they_are_off_are_refused_plainly(backend):
    with pytest.raises(RemoteError, match=r"reports are off: set \[reports\] dmarc or tls"):
        client(backend).call("reports", now=True)


def test_reports_now_must_be_a_bool():
    import asyncio

    from pigeon.admin.control import OpError
    from pigeon.admin.ops import build_handlers

    asked: list[bool] = []

    async def reports(now: bool) -> dict:
        asked.append(now)
        return {"dmarc": 0}

    handlers = build_handlers(store=None, manager=None, reports=reports)
    assert asyncio.run(handlers["reports"](now=True)) == {"dmarc": 0}
    assert asyncio.run(handlers["reports"]()) == {"dmarc": 0}
    assert asked == [True, False]
    with pytest.raises(OpError, match="now must be true or false"):
        asyncio.run(handlers["reports"](now="yes"))
