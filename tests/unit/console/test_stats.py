"""The dashboard's sampler and the recent-activity rings (console/stats.py,
console/activity.py), over pigeon's real Metrics and MailLog."""

from __future__ import annotations

import logging

from pigeon.console.activity import Activity, ActivityHandler
from pigeon.console.stats import FINE_SLOTS, INTERVAL, MINUTE_SLOTS, Sampler
from pigeon.obs.maillog import MailLog
from pigeon.obs.metrics import Metrics


def test_the_first_tick_is_the_starting_point_and_later_ones_count_deltas():
    metrics = Metrics()
    metrics.message_accepted(100)  # before the console started: not "per minute"
    sampler = Sampler(metrics.counter_totals)
    sampler.tick(1000.0)
    for _ in range(3):
        metrics.message_accepted(10)
    metrics.recipient_result("delivered", "remote")
    metrics.recipient_result("deferred", "remote")
    metrics.rejected(550)
    sampler.tick(1010.0)
    metrics.message_accepted(10)
    sampler.tick(1025.0)  # the same minute (960..1019)? no: 1020..1079
    snap = sampler.snapshot(1025.0)
    fine = snap["fine"]
    assert len(fine) == FINE_SLOTS and fine[-1]["t"] == 1020
    assert fine[-1]["in"] == 1 and fine[-2]["in"] == 3 and fine[-2]["out"] == 1
    assert fine[-2]["deferred"] == 1 and fine[-2]["rejected"] == 1
    minutes = snap["minutes"]
    assert len(minutes) == MINUTE_SLOTS
    assert (minutes[-2]["t"], minutes[-2]["in"]) == (960, 3)
    assert (minutes[-1]["t"], minutes[-1]["in"]) == (1020, 1)
    assert snap["totals"]["in"] == 5  # since start, the first one included
    assert snap["rates"]["delivered"] == 0.5 and snap["rates"]["deferred"] == 0.5
    assert snap["rejections_by_code"] == {"550": 1}
    assert snap["interval"] == INTERVAL


def test_slots_of_one_minute_add_up_and_empty_slots_are_zero():
    metrics = Metrics()
    sampler = Sampler(metrics.counter_totals)
    sampler.tick(0.0)
    for t in range(10, 60, 10):
        metrics.recipient_result("delivered", "local")
        sampler.tick(float(t))
    snap = sampler.snapshot(1000.0)
    by_start = {m["t"]: m for m in snap["minutes"]}
    assert by_start[0]["out"] == 5
    assert by_start[60]["out"] == 0 and by_start[300]["label"] == "00:05"
    assert (
        sum(m["out"] for m in snap["fine"]) == 0
    )  # the fine slots are the last 10 minutes: 410..1000


def test_rates_without_data_are_none_and_tls_share_counts_smtp_connections_only():
    metrics = Metrics()
    sampler = Sampler(metrics.counter_totals)
    sampler.tick(0.0)
    snap = sampler.snapshot(0.0)
    assert snap["rates"] == {"delivered": None, "deferred": None, "bounced": None, "tls": None}
    metrics.connection_opened("smtp")
    metrics.connection_opened("submission")
    metrics.connection_opened("imap")  # a reader's connection is not mail in
    metrics.tls_established("TLSv1.3")
    metrics.recipient_result("expired", "remote")
    sampler.tick(10.0)
    snap = sampler.snapshot(10.0)
    assert snap["rates"]["tls"] == 0.5
    assert snap["tls_versions"] == {"TLSv1.3": 1}
    assert snap["rates"]["bounced"] == 1.0 and snap["totals"]["bounced"] == 1


def test_the_rings_are_bounded_and_a_failing_reader_is_skipped():
    calls = {"n": 0}

    def read():
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("registry busy")
        return {"pigeon_messages_accepted": {(): float(calls["n"])}}

    sampler = Sampler(read)
    for i in range(200):
        sampler.tick(i * 60.0)
    assert len(sampler.minutes) == MINUTE_SLOTS and len(sampler.fine) == FINE_SLOTS
    assert all(counts["in"] >= 0 for _, counts in sampler.minutes)


def test_activity_keeps_deliveries_and_rejections_from_the_mail_log():
    logger = logging.getLogger("test.console.maillog")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    activity = Activity(limit=3)
    handler = ActivityHandler(activity, logger)
    handler.attach()
    try:
        maillog = MailLog(logger)
        maillog.log("4F2A9C", {"from": "a@x.test", "size": 10, "nrcpt": 1}, "queued")
        maillog.log(
            "4F2A9C",
            {
                "to": "b@down.test",
                "relay": "mx.down.test[192.0.2.1]:25",
                "dsn": "4.4.1",
                "status": "deferred",
            },
            "connect to mx.down.test: connection refused",
        )
        maillog.log(
            "4F2A9C",
            {"to": "c@y.test", "relay": "local", "dsn": "2.0.0", "status": "sent"},
            "delivered to maildir",
        )
        maillog.log("4F2A9C", {"status": "removed"})
        maillog.reject(
            None,
            "RCPT",
            "192.0.2.9",
            "554 5.7.1 Error: relay access denied",
            sender="s@a.test",
            recipient="x@y.test",
            proto="ESMTP",
            helo="h.test",
        )
        for _ in range(4):
            maillog.reject(None, "CONNECT", "192.0.2.8", "421 4.7.0 Error: too many connections")
    finally:
        handler.detach()
    deliveries = activity.deliveries()
    assert [d["outcome"] for d in deliveries] == ["delivered", "deferred"]
    assert deliveries[1]["reply"] == "connect to mx.down.test: connection refused"
    assert (
        deliveries[1]["relay"] == "mx.down.test[192.0.2.1]:25" and deliveries[1]["dsn"] == "4.4.1"
    )
    rejections = activity.rejections()
    assert len(rejections) == 3  # bounded: the oldest (the RCPT one) went
    assert rejections[0]["stage"] == "CONNECT" and rejections[0]["code"] == "421"
    assert rejections[0]["client"] == "unknown[192.0.2.8]"
    assert activity.top_reasons() == [("421 4.7.0 Error: too many connections", 3)]
    assert handler not in logger.handlers
