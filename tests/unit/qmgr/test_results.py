"""qmgr/results.py: results applied to recipients, and a run's conclusion; pure, integer time."""

from __future__ import annotations

import pytest

from pigeon.delivery.api import Outcome, RecipientResult
from pigeon.qmgr.results import (
    agent_failed,
    apply_results,
    bounce_rest,
    conclude,
)
from pigeon.qmgr.settings import QmgrSettings
from pigeon.queue.model import Envelope, Recipient, RecipientStatus
from pigeon.vocab import Nexthop

SMTP = Nexthop("smtp", "remote.test")
LOCAL = Nexthop("local", "example.test")
PEER = "mx.remote.test[192.0.2.1]:25"
SETTINGS = QmgrSettings(min_backoff=300, max_backoff=4000, max_lifetime=5 * 86400)


class ZeroRng:
    def uniform(self, a: float, b: float) -> float:
        return 0.0


def rcpts(*addresses: str) -> list[Recipient]:
    return [Recipient(a) for a in addresses]


def test_outcome_is_the_recipient_status_one_vocabulary():
    assert Outcome is RecipientStatus
    assert Outcome("delivered") is RecipientStatus.DELIVERED


def test_each_result_becomes_the_recipients_status_with_its_log_line():
    rs = rcpts("a@remote.test", "b@remote.test", "c@remote.test")
    results = [
        RecipientResult("c@remote.test", Outcome.BOUNCED, "5.1.1", "550 no", PEER, "failed"),
        RecipientResult(
            "a@remote.test",
            Outcome.DELIVERED,
            "2.0.0",
            "250 ok",
            PEER,
            "relayed",
            tls="TLSv1.3 X (unverified)",
            timings=(0.25, 1.5),
        ),
        RecipientResult("b@remote.test", Outcome.DEFERRED, "4.2.2", "452 full", PEER, "delayed"),
    ]
    logs: list = []
    applied = apply_results("Q", SMTP, rs, results, logs, now=1000, queue_wait=3)
    assert [(r.status, r.dsn_status, r.action) for r in rs] == [
        (RecipientStatus.DELIVERED, "2.0.0", "relayed"),
        (RecipientStatus.DEFERRED, "4.2.2", ""),
        (RecipientStatus.BOUNCED, "5.1.1", "failed"),
    ]
    assert {(r.transport, r.remote_mta, r.last_attempt) for r in rs} == {("smtp", PEER, 1000)}
    assert [f["status"] for f, _ in logs] == ["sent", "deferred", "bounced"]
    assert logs[0] == (
        {
            "to": "a@remote.test",
            "relay": PEER,
            "delay": 0.0,
            "dsn": "2.0.0",
            "status": "sent",
            "delays": "3.00/0.25/1.50",
            "tls": "TLSv1.3 X (unverified)",
        },
        "250 ok",
    )
    assert applied.reached and applied.delivered and not applied.waiting
    assert not applied.storage_fault


def test_no_peer_reached_and_a_hop_to_wait_for():
    rs = rcpts("a@remote.test", "b@remote.test")
    results = [
        RecipientResult(r.address, Outcome.DEFERRED, "4.4.1", f"refused {i}", "", "delayed")
        for i, r in enumerate(rs)
    ]
    logs: list = []
    applied = apply_results("Q", SMTP, rs, results, logs, now=1)
    assert not applied.reached and applied.waiting and applied.first_failure == "refused 0"
    assert {f["relay"] for f, _ in logs} == {"none"}


@pytest.mark.parametrize(
    "results",
    [
        [],
        [RecipientResult("other@remote.test", Outcome.DELIVERED, "2.0.0", "ok")],
        [RecipientResult("a@remote.test", RecipientStatus.PENDING, "2.0.0", "ok")],
        [RecipientResult("a@remote.test", "nonsense", "2.0.0", "ok")],  # type: ignore[arg-type]
    ],
)
def test_a_missing_or_invalid_result_is_deferred_400(results):
    (r,) = rs = rcpts("a@remote.test")
    apply_results("Q", SMTP, rs, results, [], now=1)
    assert (r.status, r.dsn_status) == (RecipientStatus.DEFERRED, "4.0.0")
    assert r.diagnostic == "delivery agent returned no result"


def test_results_match_addresses_case_insensitively():
    (r,) = rs = rcpts("Alice@Remote.test")
    res = [RecipientResult("alice@remote.test", Outcome.DELIVERED, "2.0.0", "ok", PEER)]
    apply_results("Q", SMTP, rs, res, [], now=1)
    assert r.status is RecipientStatus.DELIVERED


def test_local_lines_say_relay_local_and_delays_only_when_delivered():
    rs = rcpts("alice@example.test", "bob@example.test")
    results = [
        RecipientResult(
            "alice@example.test",
            Outcome.DELIVERED,
            "2.0.0",
            "delivered to maildir",
            timings=(0.0, 0.5),
        ),
        RecipientResult(
            "bob@example.test",
            Outcome.DEFERRED,
            "4.3.1",
            "maildir delivery failed: mail system full",
            action="delayed",
            storage_fault=True,
        ),
    ]
    logs: list = []
    applied = apply_results("Q", LOCAL, rs, results, logs, now=1, queue_wait=2)
    assert [f["relay"] for f, _ in logs] == ["local", "local"]
    assert logs[0][0]["delays"] == "2.00/0.00/0.50" and "delays" not in logs[1][0]
    assert applied.storage_fault and rs[1].transport == "local"


def test_an_agent_that_raised_defers_every_recipient_400_with_a_generic_reason():
    rs = rcpts("a@remote.test", "b@remote.test")
    results = agent_failed(rs, KeyError("secret detail"))
    apply_results("Q", SMTP, rs, results, [], now=1)
    assert {(r.dsn_status, r.diagnostic) for r in rs} == {
        ("4.0.0", "delivery agent error (KeyError)")
    }


def envelope(*rs: Recipient, received_at: float = 0) -> Envelope:
    return Envelope("Q", "s@src.test", list(rs), received_at=received_at)


def test_conclude_done_when_every_recipient_is_final():
    env = envelope(Recipient("a@x", status=RecipientStatus.DELIVERED))
    assert conclude(env, [], now=10, settings=SETTINGS, rng=ZeroRng()) == (True, 0.0)
    assert env.attempts == 0


def test_conclude_backs_off_and_counts_the_attempt():
    env = envelope(Recipient("a@x", status=RecipientStatus.DEFERRED))
    waits = []
    for now in (1000, 2000, 3000):
        done, when = conclude(env, [], now=now, settings=SETTINGS, rng=ZeroRng())
        waits.append(when - now)
    assert not done and waits == [300, 600, 1200] and env.attempts == 3


def test_a_storage_retry_is_not_an_attempt():
    env = envelope(Recipient("a@x", status=RecipientStatus.DEFERRED))
    kw = dict(settings=SETTINGS, rng=ZeroRng(), storage_retry_at=1002)
    assert conclude(env, [], now=1000, **kw) == (False, 1002)
    assert env.attempts == 0


def test_expiry_bounces_what_is_left_447_or_522_for_a_full_mailbox():
    done = Recipient("d@x", status=RecipientStatus.DELIVERED)
    slow = Recipient(
        "a@x",
        status=RecipientStatus.DEFERRED,
        diagnostic="421 busy",
        dsn_status="4.4.2",
        remote_mta=PEER,
    )
    full = Recipient(
        "b@x", status=RecipientStatus.DEFERRED, diagnostic="452 full", dsn_status="4.2.2"
    )
    env = envelope(done, slow, full)
    logs: list = []
    now = 5 * 86400
    assert conclude(env, logs, now=now, settings=SETTINGS, rng=ZeroRng()) == (True, 0.0)
    assert [(r.status, r.dsn_status, r.action) for r in (slow, full)] == [
        (RecipientStatus.BOUNCED, "4.4.7", "failed"),
        (RecipientStatus.BOUNCED, "5.2.2", "failed"),
    ]
    assert slow.diagnostic == "message expired after 5.0 days in queue; last error: 421 busy"
    assert [(f["to"], f["relay"], f["status"]) for f, _ in logs] == [
        ("a@x", PEER, "expired"),
        ("b@x", "none", "expired"),
    ]


def test_an_operator_bounce_keeps_what_the_last_attempt_reported():
    last = Recipient("a@x", status=RecipientStatus.DEFERRED, transport="smtp", remote_mta=PEER)
    env = envelope(Recipient("d@x", status=RecipientStatus.DELIVERED), last)
    logs: list = []
    bounce_rest(env, "5.0.0", "returned by the administrator", logs, now=7)
    assert (last.status, last.dsn_status, last.transport, last.remote_mta, last.last_attempt) == (
        RecipientStatus.BOUNCED,
        "5.0.0",
        "smtp",
        PEER,
        7,
    )
    assert [(f["to"], f["relay"], f["status"]) for f, _ in logs] == [("a@x", "none", "bounced")]
