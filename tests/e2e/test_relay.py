"""Deliver to the world, end to end: a real DNS server on loopback, smtp-sink
peers on other loopback addresses, pigeon in a subprocess.

  remote.test   MX 10 mx1 (127.0.0.2, nothing listening)  MX 20 mx2 (127.0.0.3, smtp-sink)
  later.test    MX 10 mx  (127.0.0.4, down at first, started later)
  reject.test   MX 10 mx  (127.0.0.5, smtp-sink rejecting every RCPT with 5xx)
  nullmx.test   MX 0 .    (RFC 7505 null MX)
  nowhere.test  NXDOMAIN
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import time

import pytest

from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.live import free_port, maildir_messages, wait_for
from pigeon.testing.sink import SmtpSink

pytestmark = pytest.mark.e2e

ZONES = {
    "remote.test": "@ MX 10 mx1\n@ MX 20 mx2\nmx1 A 127.0.0.2\nmx2 A 127.0.0.3\n",
    "later.test": "@ MX 10 mx\nmx A 127.0.0.4\n",
    "reject.test": "@ MX 10 mx\nmx A 127.0.0.5\n",
    "nullmx.test": "@ MX 0 .\n",
}


@pytest.fixture
def world(tmp_path, pigeon_factory):
    sink_port = free_port()
    with DnsServer(zones=ZONES) as dns:
        config = f"""relay_networks = ["127.0.0.0/8"]
[domains."localhost"]
[delivery]
dns_servers = ["127.0.0.1:{dns.port}"]
remote_port = {sink_port}
connect_timeout = 2.0
[queue]
run_interval = 1.0
min_backoff = 1.0
max_backoff = 2.0
"""
        server = pigeon_factory(config)
        yield server, sink_port, tmp_path


def send(server, rcpts, subject="relay test"):
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        s.sendmail(
            "sender@localhost",
            rcpts,
            f"From: sender@localhost\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n.dot line\r\n",
        )


def bounces(server):
    out = []
    for path in maildir_messages(server.data_dir, "sender@localhost"):
        out.append(email.message_from_bytes(path.read_bytes(), policy=email.policy.default))
    return out


def delivery_status(report):
    """The per-recipient field blocks of the message/delivery-status part."""
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    parts = list(report.iter_parts())
    status = next(p for p in parts if p.get_content_type() == "message/delivery-status")
    blocks = [dict(b.items()) for b in status.get_payload()]
    return blocks[0], blocks[1:]


def test_lowest_preference_mx_that_answers_gets_the_mail(world):
    server, port, tmp = world
    with SmtpSink("127.0.0.3", port, tmp / "mx2") as mx2:
        send(server, ["user@remote.test"], "to remote")
        got = wait_for(mx2.messages, timeout=20)
        assert len(got) == 1
        assert b"X-Rcpt-Args: <user@remote.test>" in got[0]
        assert b"\n.dot line\n" in got[0]  # dot-stuffed on the wire, intact here
        assert b"by pigeon.test (pigeon) with ESMTP" in got[0]
    # Log lines are written in batches a few ms later: wait for them.
    assert wait_for(
        lambda: "connect to" in server.log() or "127.0.0.2" in server.log(), timeout=10
    ), server.log()


def test_deferred_while_down_then_delivered_when_back(world):
    server, port, tmp = world
    send(server, ["user@later.test"], "later")
    assert wait_for(lambda: "status=deferred" in server.log(), timeout=20), server.log()
    with SmtpSink("127.0.0.4", port, tmp / "later") as mx:
        got = wait_for(mx.messages, timeout=30)
        assert got and b"<user@later.test>" in got[0]
    assert wait_for(lambda: "status=sent" in server.log(), timeout=10), server.log()


def test_rejected_recipient_bounces_to_sender_with_rfc3464_report(world):
    server, port, tmp = world
    with SmtpSink("127.0.0.5", port, tmp / "reject", ("-f", "RCPT")):
        send(server, ["nobody@reject.test"], "rejected")
        reports = wait_for(lambda: bounces(server), timeout=20)
    assert len(reports) == 1
    report = reports[0]
    assert report["To"] == "sender@localhost" or "sender@localhost" in report["To"]
    per_message, per_rcpt = delivery_status(report)
    assert "pigeon.test" in per_message["Reporting-MTA"]
    (rcpt,) = per_rcpt
    assert rcpt["Final-Recipient"].lower() == "rfc822; nobody@reject.test"
    assert rcpt["Action"] == "failed"
    assert rcpt["Status"].startswith("5.")
    assert "smtp;" in rcpt["Diagnostic-Code"] and "500" in rcpt["Diagnostic-Code"]
    assert "127.0.0.5" in rcpt["Remote-MTA"] or "mx.reject.test" in rcpt["Remote-MTA"]
    # The bounce itself has the null sender.
    path = maildir_messages(server.data_dir, "sender@localhost")[0]
    assert path.read_bytes().startswith(b"Return-Path: <>")


@pytest.mark.parametrize("domain,status", [("nullmx.test", "5.1.10"), ("nowhere.test", "5.1.2")])
def test_undeliverable_domains_bounce_at_once(world, domain, status):
    server, _, _ = world
    start = time.monotonic()
    send(server, [f"user@{domain}"], domain)
    reports = wait_for(lambda: bounces(server), timeout=20)
    assert reports, server.log()
    _, (rcpt,) = delivery_status(reports[0])
    assert rcpt["Status"] == status
    assert time.monotonic() - start < 15
