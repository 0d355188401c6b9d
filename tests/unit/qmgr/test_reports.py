"""RFC 3464 reports: build_dsn() parsed back with the stdlib `email` package, and
which reports the manager sends (expiry, delay warning, NOTIFY, null sender,
double bounce)."""

from __future__ import annotations

import email
import email.policy

import pytest
from test_attempts import DAY, REFUSED, Env, status_blocks  # noqa: F401  (fixture helper)

from pigeon.delivery.api import Outcome, RecipientResult
from pigeon.proto.params import MailParams, RcptParams
from pigeon.qmgr.bounce import DsnRecipient, build_dsn
from pigeon.queue.model import Envelope, Recipient, RecipientStatus
from pigeon.testing.fakes import BytesContent, FakeReply

ORIGINAL = b"Received: by mx\r\nSubject: hi\r\nFrom: a@src.test\r\n\r\nbody line\r\n"


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.store.close()


def parse(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.default)


def build(tmp_path, *, kind="failure", params=MailParams(), rcpts=None, **kw) -> bytes:
    envelope = Envelope(
        "QID123",
        "a@src.test",
        [Recipient("bob@dst.test")],
        params=params,
        received_at=1_700_000_000,
    )
    rcpts = rcpts or [
        DsnRecipient(
            "bob@dst.test",
            "failed",
            "5.1.1",
            "550 5.1.1 no such user",
            "mx.dst.test[192.0.2.5]:25",
            last_attempt=1_700_000_100,
        )
    ]
    return build_dsn(
        envelope,
        rcpts,
        kind=kind,
        reporting_mta="mx.example.test",
        arrival_date=1_700_000_000,
        content=BytesContent(ORIGINAL),
        now=1_700_000_200,
        **kw,
    )


# --- the message ---------------------------------------------------------------------


def test_failure_report_structure_and_fields(tmp_path):
    data = build(tmp_path)
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    msg = parse(data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mx.example.test>"
    assert msg["To"] == "a@src.test" and msg["Auto-Submitted"] == "auto-replied"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Date"] and msg["Message-ID"]
    human, status, original = msg.get_payload()
    assert human.get_content_type() == "text/plain"
    assert "550 5.1.1 no such user" in human.get_content()
    assert "host mx.dst.test[192.0.2.5]:25 said" in human.get_content()
    per_msg, per_rcpt = status.get_payload()
    assert per_msg["Reporting-MTA"] == "dns; mx.example.test"
    assert per_msg["Arrival-Date"] == "Tue, 14 Nov 2023 22:13:20 +0000"
    assert per_msg["Original-Envelope-Id"] is None
    assert per_rcpt["Final-Recipient"] == "rfc822; bob@dst.test"
    assert per_rcpt["Action"] == "failed" and per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Remote-MTA"] == "dns; mx.dst.test"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    assert per_rcpt["Last-Attempt-Date"] and per_rcpt["Will-Retry-Until"] is None
    assert original.get_content_type() == "message/rfc822"
    inner = original.get_payload()[0]
    assert inner["Subject"] == "hi" and inner.get_content().strip() == "body line"


def test_ret_hdrs_returns_headers_only(tmp_path):
    msg = parse(build(tmp_path, params=MailParams(ret="HDRS")))
    part = msg.get_payload()[2]
    assert part.get_content_type() == "text/rfc822-headers"
    text = part.get_payload(decode=True)
    assert b"Subject: hi" in text and b"body line" not in text


def test_envid_and_orcpt(tmp_path):
    rc = DsnRecipient("bob@dst.test", "failed", "5.1.1", "gone", orcpt=("rfc822", "Bob@Dst.Test"))
    msg = parse(build(tmp_path, params=MailParams(envid="QQ314159"), rcpts=[rc]))
    per_msg, per_rcpt = status_blocks(msg)
    assert per_msg["Original-Envelope-Id"] == "QQ314159"
    assert per_rcpt["Original-Recipient"] == "rfc822; Bob@Dst.Test"
    assert per_rcpt["Diagnostic-Code"] == "X-Pigeon; gone"  # not from a remote server
    assert per_rcpt["Remote-MTA"] is None


def test_hostile_envid_and_reply_cannot_inject_headers(tmp_path):
    rc = DsnRecipient(
        "bob@dst.test",
        "failed",
        "5.0.0",
        "550 a\r\nAction: delivered",
        "mx[192.0.2.1]:25",
        orcpt=("rfc822", "x\r\nStatus: 2.0.0"),
    )
    msg = parse(build(tmp_path, params=MailParams(envid="id\r\nX-Evil: 1"), rcpts=[rc]))
    per_msg, per_rcpt = status_blocks(msg)
    assert per_msg["X-Evil"] is None and per_msg["Original-Envelope-Id"] == "id+0D+0AX-Evil:+201"
    assert per_rcpt.get_all("Action") == ["failed"] and per_rcpt.get_all("Status") == ["5.0.0"]
    assert per_rcpt["Original-Recipient"] == "rfc822; x+0D+0AStatus:+202.0.0"


def test_delay_report_has_will_retry_until_and_headers_only(tmp_path):
    rc = DsnRecipient(
        "bob@dst.test", "delayed", "4.4.1", "connect refused", will_retry_until=1_700_432_000
    )
    msg = parse(build(tmp_path, kind="delay", rcpts=[rc]))
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    _, per_rcpt = status_blocks(msg)
    assert per_rcpt["Action"] == "delayed" and per_rcpt["Will-Retry-Until"]
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"  # RFC 3461 §4.3


# --- which reports the manager sends ------------------------------------------------


def test_expiry_bounces_the_rest_with_447(env):
    env.agent.start_err = REFUSED
    env.mgr._sched.dests.failure_limit = 10**6
    qid = env.commit("a@remote.test", "b@remote.test")
    env.agent.rcpt_err = {}
    env.attempt(qid)
    env.clock.advance(5 * DAY)
    env.attempt(qid)
    assert env.store.list("deferred") == [] and env.log.statuses(qid)[-1] == "removed"
    assert env.log.statuses(qid).count("expired") == 2
    (bounce,) = env.others(qid)
    assert bounce.sender == "" and bounce.dsn_kind == "failure"
    assert [r.address for r in bounce.recipients] == ["sender@example.test"]
    blocks = status_blocks(env.report(bounce))
    assert [b["Status"] for b in blocks[1:]] == ["4.4.7", "4.4.7"]
    assert "Connection refused" in blocks[1]["Diagnostic-Code"]
    assert any(
        "sender non-delivery notification: " + bounce.queue_id == (c.detail or "")
        for c in env.log.for_id(qid)
    )


def test_delay_warning_sent_once(tmp_path):
    e = Env(tmp_path, delay_warning=3600)
    e.agent.start_err = REFUSED
    e.mgr._sched.dests.failure_limit = 10**6
    qid = e.commit("a@remote.test", Recipient("n@remote.test", RcptParams(("FAILURE",))))
    e.attempt(qid)
    assert e.others(qid) == []
    for _ in range(3):
        e.clock.advance(3600)
        e.attempt(qid)
    (warning,) = e.others(qid)
    assert warning.dsn_kind == "delay" and e.envelope(qid).delay_warned
    blocks = status_blocks(e.report(warning))
    assert [b["Final-Recipient"] for b in blocks[1:]] == ["rfc822; a@remote.test"]
    assert blocks[1]["Action"] == "delayed"
    e.store.close()


def test_explicit_notify_delay_honoured_with_warnings_off(tmp_path):
    e = Env(tmp_path, delay_warning=0)
    e.agent.start_err = REFUSED
    e.mgr._sched.dests.failure_limit = 10**6
    qid = e.commit("a@remote.test", Recipient("d@remote.test", RcptParams(("DELAY",))))
    e.attempt(qid)
    e.clock.advance(4 * 3600)
    e.attempt(qid)
    (warning,) = e.others(qid)
    assert [b["Final-Recipient"] for b in status_blocks(e.report(warning))[1:]] == [
        "rfc822; d@remote.test"
    ]
    e.store.close()


def test_notify_never_and_no_failure_mean_no_bounce(env):
    env.agent.results_fn = lambda req, r: FakeReply("5.1.1", "550 5.1.1 unknown")
    qid = env.commit(
        Recipient("a@remote.test", RcptParams(("NEVER",))),
        Recipient("b@remote.test", RcptParams(("DELAY", "SUCCESS"))),
    )
    env.attempt(qid)
    assert env.store.list() == [] and env.log.statuses(qid) == ["bounced", "bounced", "removed"]


def test_null_sender_gets_no_bounce(env):
    env.agent.results_fn = lambda req, r: FakeReply("5.1.1", "550 5.1.1 unknown")
    qid = env.commit("a@remote.test", sender="")
    env.attempt(qid)
    assert env.store.list() == []
    assert env.log.for_id(qid)[1].detail == "null sender: no non-delivery notification"


def test_double_bounce_goes_to_postmaster_once_then_is_dropped(env):
    env.agent.results_fn = lambda req, r: FakeReply("5.1.1", "550 5.1.1 unknown")
    qid = env.commit("a@remote.test", sender="someone@remote.test")
    env.attempt(qid)
    (bounce,) = env.others(qid)  # to someone@remote.test: fails too
    env.attempt(bounce.queue_id)
    (notice,) = env.others(bounce.queue_id)
    assert notice.dsn_kind == "double-bounce" and notice.sender == ""
    assert [r.address for r in notice.recipients] == ["postmaster@example.test"]
    msg = env.report(notice)
    assert msg["Subject"].startswith("Postmaster Copy:")
    assert msg["To"] == "postmaster@example.test"
    assert any(
        "postmaster non-delivery notification" in (c.detail or "")
        for c in env.log.for_id(bounce.queue_id)
    )
    # Postmaster's mailbox fails too: dropped with a log line, nothing new queued.
    r = notice.recipients[0]
    r.status, r.dsn_status, r.diagnostic = RecipientStatus.BOUNCED, "5.2.2", "mailbox full"
    env.store.update(notice, "deferred", 0)
    env.attempt(notice.queue_id)
    assert env.store.list() == []
    assert "discarding undeliverable postmaster notification" in [
        c.detail for c in env.log.for_id(notice.queue_id)
    ]


def test_success_report_for_local_delivery_with_notify_success(env):
    qid = env.commit(
        Recipient("alice@example.test", RcptParams(("SUCCESS",))),
        Recipient("bob@example.test"),
        sender="x@remote.test",
    )
    env.attempt(qid)
    (report,) = env.others(qid)
    assert report.dsn_kind == "success" and report.recipients[0].address == "x@remote.test"
    msg = env.report(report)
    assert msg["Subject"] == "Successful Mail Delivery Report"
    blocks = status_blocks(msg)
    assert [(b["Final-Recipient"], b["Action"], b["Status"]) for b in blocks[1:]] == [
        ("rfc822; alice@example.test", "delivered", "2.0.0")
    ]
    assert any(
        "sender delivery status notification" in (c.detail or "") for c in env.log.for_id(qid)
    )


def test_success_report_only_for_relayed_remote(env):
    def results(req, r):
        action = "relayed" if r.address.startswith("old") else "delivered"
        return RecipientResult(
            r.address, Outcome.DELIVERED, "2.0.0", "250 ok", "mx[192.0.2.1]:25", action
        )

    env.agent.results_fn = results
    notify = RcptParams(("SUCCESS",))
    qid = env.commit(Recipient("old@remote.test", notify), Recipient("new@remote.test", notify))
    env.attempt(qid)
    (report,) = env.others(qid)
    blocks = status_blocks(env.report(report))
    assert [(b["Final-Recipient"], b["Action"]) for b in blocks[1:]] == [
        ("rfc822; old@remote.test", "relayed")
    ]
