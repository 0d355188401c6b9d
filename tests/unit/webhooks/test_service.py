"""Webhooks end to end in one process (webhooks/service.py): a real HTTP receiver on
loopback, the real outbox and client; time passed in for the retry schedule."""

from __future__ import annotations

import asyncio
import json
import time

from pigeon.hooks.events import DeliveryEvent
from pigeon.queue.model import Envelope, Recipient
from pigeon.testing.webhookpeer import WebhookReceiver
from pigeon.webhooks.outbox import Entry, Outbox
from pigeon.webhooks.service import Endpoint, Webhooks
from pigeon.webhooks.signature import verify

SECRET = "test-secret"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _endpoint(url, events=("received", "delivered", "bounced"), max_age=3600.0, max_pending=100):
    return Endpoint(url, frozenset(events), SECRET, 5.0, max_age, max_pending)


def _envelope():
    return Envelope(
        "Q1",
        "alice@example.test",
        [Recipient("bob@example.org")],
        size=10,
        client_address="127.0.0.1",
    )


def _delivered(kind="delivered", when=None):
    when = time.time() if when is None else when
    return DeliveryEvent(
        kind, "Q1", "alice@example.test", ("bob@example.org",), "local", "2.0.0", "ok", when
    )


async def _until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_events_posted_signed_and_removed(tmp_path):
    async def main(peer):
        hooks = Webhooks([_endpoint(peer.url)], Outbox(tmp_path / "wh"))
        stop = asyncio.Event()
        sender = asyncio.ensure_future(hooks.run(stop))
        hooks.received(_envelope())
        hooks.delivered(_delivered())
        hooks.deferred(_delivered("deferred"))  # not wanted by this endpoint
        await _until(lambda: len(peer.received) >= 2)
        await _until(lambda: hooks.outbox.names() == [])
        stop.set()
        await sender
        await hooks.close()

    with WebhookReceiver() as peer:
        asyncio.run(main(peer))
        got = peer.received
    assert sorted(json.loads(r.body)["type"] for r in got) == ["delivered", "received"]
    for r in got:
        doc = json.loads(r.body)
        assert r.path == "/hook"
        assert r.headers["Content-Type"] == "application/json"
        assert r.headers["Pigeon-Event"] == doc["type"]
        assert r.headers["Pigeon-Event-Id"] == doc["id"]
        assert verify(SECRET, r.headers["Pigeon-Signature"], r.body, time.time())
    assert json.loads(got[0].body)["queue_id"] == "Q1"


def test_receiver_down_retried_with_backoff_then_taken(tmp_path):
    clock = Clock()

    async def main(peer):
        hooks = Webhooks([_endpoint(peer.url)], Outbox(tmp_path / "wh"), clock=clock)
        stop = asyncio.Event()
        sender = asyncio.ensure_future(hooks.run(stop))
        hooks.delivered(_delivered(when=clock.now))
        await _until(lambda: len(peer.received) == 1)  # refused: 503
        await asyncio.sleep(0.3)
        assert len(peer.received) == 1 and len(hooks.outbox.names()) == 1  # waits 10 s
        peer.status = 200
        clock.now += 10
        hooks.nudge()
        await _until(lambda: len(peer.received) == 2)
        await _until(lambda: hooks.outbox.names() == [])
        stop.set()
        await sender

    with WebhookReceiver() as peer:
        peer.status = 503
        asyncio.run(main(peer))
        first, second = peer.received
    assert first.body == second.body  # the same event, id and all
    assert first.headers["Pigeon-Signature"] != second.headers["Pigeon-Signature"]  # new t=


def test_connection_refused_keeps_the_event(tmp_path):
    with WebhookReceiver() as gone:
        url = gone.url  # a port nobody listens on once closed

    async def main():
        hooks = Webhooks([_endpoint(url)], Outbox(tmp_path / "wh"))
        stop = asyncio.Event()
        sender = asyncio.ensure_future(hooks.run(stop))
        hooks.delivered(_delivered())
        await _until(lambda: hooks._failing == {url})
        stop.set()
        await sender
        await hooks.close()
        return hooks.outbox.names()

    assert len(asyncio.run(main())) == 1


def test_left_by_an_earlier_run_sent_at_start_and_too_old_dropped(tmp_path):
    clock = Clock()
    box = Outbox(tmp_path / "wh")
    box.prepare()

    with WebhookReceiver() as peer:
        fresh = Entry(peer.url, "bounced", "evt_" + "1" * 32, clock.now - 60, b'{"a":1}')
        stale = Entry(peer.url, "bounced", "evt_" + "2" * 32, clock.now - 7200, b'{"a":2}')
        elsewhere = Entry("http://127.0.0.1:9/gone", "bounced", "evt_" + "3" * 32, clock.now, b"{}")
        box.write([fresh, stale, elsewhere], {peer.url: 10, elsewhere.url: 10})

        async def main():
            hooks = Webhooks([_endpoint(peer.url)], box, clock=clock)
            stop = asyncio.Event()
            sender = asyncio.ensure_future(hooks.run(stop))
            await _until(lambda: box.names() == [])
            stop.set()
            await sender

        asyncio.run(main())
        assert [r.body for r in peer.received] == [b'{"a":1}']
        assert peer.received[0].headers["Pigeon-Event-Id"] == fresh.id


def test_max_pending_drops_new_events(tmp_path, caplog):
    async def main():
        hooks = Webhooks([_endpoint("http://127.0.0.1:9/", max_pending=2)], Outbox(tmp_path / "wh"))
        hooks.outbox.prepare()
        for _ in range(3):
            hooks.delivered(_delivered())
            await hooks.close()
        return hooks.outbox.names()

    assert len(asyncio.run(main())) == 2
    assert "webhook outbox full (max_pending): 1 event(s) dropped" in caplog.text
