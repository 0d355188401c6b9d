"""Webhooks against a live pigeon (issue 15, item 4; docs/webhooks.md): a real HTTP
receiver on loopback gets "received" and "delivered", signed; with the receiver
down and pigeon killed (SIGKILL) and started again, no event is lost."""

from __future__ import annotations

import json
import signal
import smtplib
import time

import pytest

from pigeon.testing.live import free_port, wait_for
from pigeon.testing.sink import SmtpSink
from pigeon.testing.webhookpeer import WebhookReceiver
from pigeon.webhooks.signature import verify

pytestmark = pytest.mark.e2e

#: Seconds for what happens beside the SMTP reply (bounded polling; the
#: machine may be loaded). A restarted sender retries after 10 s at first.
WAIT = 60
SECRET = "e2e-webhook-secret"


def _config(url: str) -> str:
    return (
        '[domains."example.test"]\nmailboxes = ["alice"]\n'
        f'[[webhooks]]\nurl = "{url}"\nsecret = "{SECRET}"\n'
        'events = ["received", "delivered", "bounced"]\n'
    )


def _send(server) -> str:
    """One message to alice@example.test over SMTP; its queue ID."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("sender@client.test")
        smtp.rcpt("alice@example.test")
        code, reply = smtp.data(b"Subject: hook\r\n\r\nhello\r\n")
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[-1]


def _events(peer) -> dict[tuple[str, str], list]:
    out: dict[tuple[str, str], list] = {}
    for r in list(peer.received):
        doc = json.loads(r.body)
        out.setdefault((doc["type"], doc["queue_id"]), []).append((r, doc))
    return out


def _check_signed(request, doc) -> None:
    assert verify(SECRET, request.headers["Pigeon-Signature"], request.body, time.time())
    assert request.headers["Pigeon-Event"] == doc["type"]
    assert request.headers["Pigeon-Event-Id"] == doc["id"]
    assert request.headers["Content-Type"] == "application/json"


def test_received_and_delivered_signed_and_nothing_lost_across_a_kill(pigeon_factory):
    peer = WebhookReceiver()
    port = peer.port
    try:
        server = pigeon_factory(_config(peer.url))
        first = _send(server)
        got = wait_for(
            lambda: {("received", first), ("delivered", first)} <= _events(peer).keys(), WAIT
        )
        assert got, f"events: {[r.body for r in peer.received]}\n{server.log()}"
        for kind in ("received", "delivered"):
            [(request, doc)] = _events(peer)[(kind, first)]
            _check_signed(request, doc)
            assert doc["sender"] == "sender@client.test"
            assert doc["recipients"] == ["alice@example.test"]
        assert _events(peer)[("delivered", first)][0][1]["status"].startswith("2.")
        outbox = server.data_dir / "webhooks" / "outbox"
        assert wait_for(lambda: not list(outbox.iterdir()), WAIT)  # taken: removed
    finally:
        peer.close()

    # The receiver is down: the events wait in the outbox; pigeon is killed.
    second = _send(server)
    assert wait_for(lambda: len(list(outbox.iterdir())) >= 2, WAIT), server.log()
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    server.start()
    peer = WebhookReceiver(port=port)  # back, where it was
    try:
        got = wait_for(
            lambda: {("received", second), ("delivered", second)} <= _events(peer).keys(), WAIT
        )
        assert got, f"events: {[r.body for r in peer.received]}\n{server.log()}"
        for kind in ("received", "delivered"):
            request, doc = _events(peer)[(kind, second)][0]
            _check_signed(request, doc)
        assert wait_for(lambda: not list(outbox.iterdir()), WAIT), server.log()
    finally:
        peer.close()
    server.stop()


def test_worker_processes_events_reach_the_main_process_sender(pigeon_factory):
    """`workers = 2`: a worker writes the "received" of the mail it accepts to the
    shared outbox; the main process sends it, and its manager's "delivered"
    (the queue's path: local_at_accept off)."""
    with WebhookReceiver() as peer:
        server = pigeon_factory(
            "workers = 2\n[queue]\nlocal_at_accept = false\n" + _config(peer.url)
        )
        ids = [_send(server) for _ in range(6)]
        wanted = {(kind, qid) for qid in ids for kind in ("received", "delivered")}
        got = wait_for(lambda: wanted <= _events(peer).keys(), WAIT)
        assert got, f"missing: {wanted - _events(peer).keys()}\n{server.log()}"
        for (request, doc), *_ in _events(peer).values():
            _check_signed(request, doc)
        server.stop()


def test_deferred_bounced_and_expired(pigeon_factory):
    """The other outcomes, each with its status and diagnostic: a next hop that
    refuses RCPT (bounced, 5.x.x), one that is down (deferred, then expired
    after [queue] max_lifetime)."""
    closed, rejecting = free_port(), free_port()
    with WebhookReceiver() as peer:
        server = pigeon_factory(
            'relay_networks = ["127.0.0.0/8"]\n'
            "[queue]\nmin_backoff = 1\nmax_backoff = 1\nrun_interval = 0.5\nmax_lifetime = 3\n"
            f'[transports]\n"down.test" = "smtp:[127.0.0.1]:{closed}"\n'
            f'"reject.test" = "smtp:[127.0.0.1]:{rejecting}"\n'
            f'[[webhooks]]\nurl = "{peer.url}"\nsecret = "{SECRET}"\n'
            'events = ["deferred", "bounced", "expired"]\n'
        )
        with SmtpSink("127.0.0.1", rejecting, extra_args=("-f", "RCPT")):
            with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as smtp:
                smtp.sendmail("a@client.test", ["x@reject.test"], b"Subject: 1\r\n\r\nhi\r\n")
                smtp.sendmail("a@client.test", ["y@down.test"], b"Subject: 2\r\n\r\nhi\r\n")

            def kinds(address: str) -> list[str]:
                return [
                    d["type"] for (_, d), *_ in _events(peer).values() if address in d["recipients"]
                ]

            assert wait_for(lambda: "bounced" in kinds("x@reject.test"), WAIT), server.log()
            assert wait_for(lambda: "expired" in kinds("y@down.test"), WAIT), server.log()
        docs = [d for (_, d), *_ in _events(peer).values()]
        assert "received" not in {d["type"] for d in docs}  # not asked for
        assert "deferred" in kinds("y@down.test")
        bounced = next(d for d in docs if d["type"] == "bounced")
        assert bounced["status"].startswith("5.") and bounced["diagnostic"]
        assert bounced["relay"].startswith("127.0.0.1")
        expired = next(d for d in docs if d["type"] == "expired")
        assert expired["status"].startswith("4.") or expired["status"].startswith("5.")
        for request, doc in (rd for rds in _events(peer).values() for rd in rds):
            _check_signed(request, doc)
        server.stop()
