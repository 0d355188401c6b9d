"""The receive pipeline (policy/pipeline.py): which checks a stage asks, how
their verdicts combine, where refusals that cannot be given at once go, and
what the builder composes (policy/build.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pigeon.config import load_config
from pigeon.policy.api import (
    ACCEPT,
    HeaderField,
    MailCheck,
    RcptCheck,
    SessionFacts,
    Verdict,
    refuse,
)
from pigeon.policy.build import PolicyDeps, build_pipeline
from pigeon.policy.pipeline import ReceivePipeline
from pigeon.proto import reply as R
from pigeon.proto.events import TlsInfo
from pigeon.proto.params import MailParams, RcptParams
from pigeon.routing.resolve import Router
from pigeon.vocab.address import Address
from pigeon.vocab.errors import StoreError

BOB = Address("bob", "example.test")
NOWHERE = R.reply(550, "5.7.1", "Error: go away")
LATER = R.reply(450, "4.7.1", "Error: later")
TLS = TlsInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256)


class Recorder:
    """A check for every stage that records the stages it was asked at."""

    def __init__(self, log: list[str], answer: Verdict | None = None) -> None:
        self.log, self.answer = log, answer

    def _asked(self, stage: str) -> Verdict | None:
        self.log.append(stage)
        return self.answer

    def connect(self, s):
        return self._asked("connect")

    def helo(self, s):
        return self._asked("helo")

    def tls(self, s):
        return self._asked("tls")

    def auth(self, s):
        return self._asked("auth")

    def mail(self, s, sender, params):
        return self._asked("mail")

    def rcpt(self, s, recipient, params):
        return self._asked("rcpt")

    def data(self, s):
        return self._asked("data")

    def end_of_data(self, s, message):
        return self._asked("end_of_data")

    def etrn(self, s, node):
        return self._asked("etrn")


class OnlyRcpt:
    def __init__(self, answer: Verdict | None) -> None:
        self.answer, self.asked = answer, 0

    def rcpt(self, s, recipient, params):
        self.asked += 1
        return self.answer


def rcpt(pipeline: ReceivePipeline, session=None) -> Verdict:
    session = session or pipeline.session("192.0.2.1")
    session.mail(None, MailParams())
    verdict = session.rcpt(BOB, RcptParams())
    assert isinstance(verdict, Verdict)
    return verdict


def test_a_stage_asks_only_the_checks_that_have_it():
    only = OnlyRcpt(None)
    log: list[str] = []
    pipeline = ReceivePipeline([only, Recorder(log)])
    assert isinstance(only, RcptCheck) and not isinstance(only, MailCheck)
    session = pipeline.session("192.0.2.1")
    session.mail(None, MailParams())
    assert only.asked == 0 and log == ["mail"]
    assert pipeline.stage_checks("rcpt") == ["OnlyRcpt", "Recorder"]
    assert pipeline.stage_checks("mail") == ["Recorder"]


def test_the_first_refusal_ends_the_stage_and_effects_before_it_are_kept():
    later = OnlyRcpt(None)
    first = OnlyRcpt(Verdict(headers=(HeaderField("X-A", "1"),)))
    no = OnlyRcpt(refuse(NOWHERE))
    verdict = rcpt(ReceivePipeline([first, no, later]))
    assert verdict.reply == NOWHERE and later.asked == 0
    assert [h.name for h in verdict.headers] == ["X-A"]


def test_nothing_to_say_costs_nothing():
    assert rcpt(ReceivePipeline([OnlyRcpt(None), OnlyRcpt(None)])) is ACCEPT
    assert rcpt(ReceivePipeline([])) is ACCEPT


def test_asynchronous_checks_are_awaited_in_order():
    order: list[str] = []

    class Slow:
        async def rcpt(self, s, recipient, params):
            await asyncio.sleep(0)
            order.append("slow")
            return Verdict(headers=(HeaderField("X-Slow", "yes"),))

    class Then:
        def rcpt(self, s, recipient, params):
            order.append("then")
            return refuse(LATER)

    async def run() -> Verdict:
        session = ReceivePipeline([Slow(), Then()]).session("192.0.2.1")
        session.mail(None, MailParams())
        answer = session.rcpt(BOB, RcptParams())
        assert not isinstance(answer, Verdict)  # the driver awaits only then
        return await answer

    verdict = asyncio.run(run())
    assert order == ["slow", "then"] and verdict.reply == LATER
    assert [h.name for h in verdict.headers] == ["X-Slow"]


def test_an_asynchronous_check_after_synchronous_ones_resumes_after_it():
    order: list[str] = []

    class Sync:
        def rcpt(self, s, recipient, params):
            order.append("sync")
            return Verdict(headers=(HeaderField("X-Sync", str(len(order))),))

    class Slow:
        async def rcpt(self, s, recipient, params):
            await asyncio.sleep(0)
            order.append("slow")
            return None

    sync = Sync()  # the same check twice: each asked once per place

    async def run() -> Verdict:
        session = ReceivePipeline([sync, OnlyRcpt(None), Slow(), sync]).session("192.0.2.1")
        session.mail(None, MailParams())
        answer = session.rcpt(BOB, RcptParams())
        assert not isinstance(answer, Verdict)
        return await answer

    verdict = asyncio.run(run())
    assert order == ["sync", "slow", "sync"] and verdict.reply is None
    assert [(h.name, h.value) for h in verdict.headers] == [("X-Sync", "1"), ("X-Sync", "3")]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_check_that_raises_is_a_451_and_a_logged_bug(asynchronous, caplog):
    class Broken:
        def rcpt(self, s, recipient, params):
            raise KeyError("bug")

    class BrokenLater:
        async def rcpt(self, s, recipient, params):
            raise KeyError("bug")

    pipeline = ReceivePipeline([BrokenLater() if asynchronous else Broken()])
    session = pipeline.session("192.0.2.1")
    session.mail(None, MailParams())
    with caplog.at_level(logging.ERROR, logger="pigeon.policy"):
        answer = session.rcpt(BOB, RcptParams())
        verdict = answer if isinstance(answer, Verdict) else asyncio.run(answer)
    assert verdict.reply == R.CHECK_FAILED
    assert "KeyError" in caplog.text and "failed at rcpt" in caplog.text


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_storage_failure_under_a_check_is_the_commits_451_without_a_traceback(
    asynchronous, caplog
):
    # A check reading the spooled message when the disk fails (EIO): the storage's
    # trouble, not a bug in the check (seen in test_storage_faults under load).
    class Reads:
        def rcpt(self, s, recipient, params):
            raise StoreError("reading the spooled message: EIO", storage_fault=True)

    class ReadsLater:
        async def rcpt(self, s, recipient, params):
            raise StoreError("reading the spooled message: EIO", storage_fault=True)

    pipeline = ReceivePipeline([ReadsLater() if asynchronous else Reads()])
    session = pipeline.session("192.0.2.1")
    session.mail(None, MailParams())
    with caplog.at_level(logging.ERROR, logger="pigeon.policy"):
        answer = session.rcpt(BOB, RcptParams())
        verdict = answer if isinstance(answer, Verdict) else asyncio.run(answer)
    assert verdict.reply == R.LOCAL_ERROR
    assert "could not read the message at rcpt" in caplog.text
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)


def test_refusals_at_connect_and_helo_are_given_at_every_rcpt():
    class NoClient:
        def connect(self, s):
            return refuse(NOWHERE)

    session = ReceivePipeline([NoClient()]).session("192.0.2.1")
    assert session.connect() is ACCEPT  # the greeting goes out as usual
    assert session.mail(None, MailParams()).reply is None
    assert rcpt(ReceivePipeline([]), session).reply == NOWHERE
    assert rcpt(ReceivePipeline([]), session).reply == NOWHERE


def test_a_421_at_connect_is_given_at_once():
    class Full:
        def connect(self, s):
            return refuse(R.reply(421, "4.7.0", "Error: busy"))

    assert ReceivePipeline([Full()]).session("192.0.2.1").connect().reply.code == 421


def test_a_helo_refusal_lasts_until_the_next_helo():
    class BadHelo:
        def helo(self, s):
            return refuse(NOWHERE) if s.helo == "localhost" else None

    pipeline = ReceivePipeline([BadHelo()])
    session = pipeline.session("192.0.2.1")
    session.helo("localhost", True)
    assert rcpt(pipeline, session).reply == NOWHERE
    session.helo("client.example", True)
    assert rcpt(pipeline, session).reply is None


def test_tls_forgets_the_login_and_what_helo_said():
    class Stamp:
        def helo(self, s):
            return Verdict(headers=(HeaderField("X-Helo", s.helo or ""),))

        def tls(self, s):
            return Verdict(headers=(HeaderField("X-Tls", s.tls.version),))

    session = ReceivePipeline([Stamp()]).session("192.0.2.1")
    session.helo("before", True)
    session.auth("alice@example.test", frozenset({"alice@example.test"}))
    session.tls(TLS)
    facts = session.facts
    assert facts.helo is None and facts.user is None and facts.owned == frozenset()
    session.helo("after", True)
    session.mail(None, MailParams())
    final = session.end_of_data(object())  # no end_of_data check: the message is not read
    assert [h.to_bytes() for h in final.headers] == [b"X-Tls: TLSv1.3\r\n", b"X-Helo: after\r\n"]


def test_a_login_is_trusted_only_once_the_session_says_it_is_done(tmp_path):
    """A SCRAM client may still cancel after the auth stage accepted (RFC 4954
    §4): until `authenticated()` it relays like a stranger."""
    config = load_config(None, {"data_dir": str(tmp_path)})
    pipeline = build_pipeline(config, PolicyDeps(Router(config)))
    session = pipeline.session("203.0.113.5")
    assert session.auth("alice@example.test", frozenset({"alice@example.test"})).reply is None
    assert session.facts.user is None
    session.mail(None, MailParams())
    remote = Address("carol", "elsewhere.example")
    assert session.rcpt(remote, RcptParams()).reply == R.RELAY_DENIED
    session.authenticated()  # the session's Authenticated event
    assert session.facts.user == "alice@example.test"
    assert session.rcpt(remote, RcptParams()).reply is None


def test_an_auth_refusal_answers_the_login_and_leaves_the_client_anonymous():
    class NotHere:
        def auth(self, s):
            return refuse(R.AUTH_FAILED) if s.client_ip.startswith("203.") else None

    pipeline = ReceivePipeline([NotHere()])
    session = pipeline.session("203.0.113.5")
    assert session.auth("alice@example.test", frozenset()).reply == R.AUTH_FAILED
    assert session.facts.user is None
    assert pipeline.session("192.0.2.1").auth("alice@example.test", frozenset()).reply is None


def test_effects_of_the_transaction_add_up_and_end_with_it():
    class Effects:
        def mail(self, s, sender, params):
            return Verdict(headers=(HeaderField("X-Mail", "1"),), quarantine="looks odd")

        def rcpt(self, s, recipient, params):  # rewrites every recipient
            return Verdict(recipients=(*s.recipients, (Address("r", recipient.domain), params)))

        def end_of_data(self, s, message):
            return Verdict(headers=(HeaderField("X-End", "2"),))

    session = ReceivePipeline([Effects()]).session("192.0.2.1")
    session.mail(BOB, MailParams())
    session.rcpt(BOB, RcptParams())
    session.rcpt(Address("carol", "other.test"), RcptParams())
    assert [str(a) for a, _ in session.facts.recipients] == ["r@example.test", "r@other.test"]
    final = session.end_of_data(object())
    assert [h.name for h in final.headers] == ["X-Mail", "X-End"]
    assert final.quarantine == "looks odd"
    assert [str(a) for a, _ in final.recipients] == ["r@example.test", "r@other.test"]
    session.reset()
    session.mail(None, MailParams())
    assert session.facts.recipients == []
    again = session.end_of_data(object())  # this transaction's own effects only
    assert [h.name for h in again.headers] == ["X-Mail", "X-End"]
    assert again.recipients is None


def test_discard_removed_fields_and_transports_add_up_per_transaction():
    class Effects:
        def helo(self, s):
            return Verdict(remove_headers=("X-Helo",))

        def mail(self, s, sender, params):
            return Verdict(transport="smtp:[192.0.2.9]:25", remove_headers=("X-Mail",))

        def rcpt(self, s, recipient, params):
            if recipient.local == "filter":  # this recipient only
                return Verdict(transport="lmtp:unix:/run/filter")
            if recipient.local == "trash":
                return Verdict(discard="trash")
            return None

    session = ReceivePipeline([Effects()]).session("192.0.2.1")
    session.helo("client.test", True)
    session.mail(BOB, MailParams())
    session.rcpt(Address("filter", "example.test"), RcptParams())
    session.rcpt(BOB, RcptParams())
    assert session.routes == {"filter@example.test": "lmtp:unix:/run/filter"}
    final = session.end_of_data(object())
    assert final.remove_headers == ("X-Helo", "X-Mail")
    assert final.transport == "smtp:[192.0.2.9]:25"  # the message's: the rcpt one is not
    assert final.discard is None
    session.reset()
    assert session.routes == {}
    session.mail(BOB, MailParams())
    session.rcpt(Address("trash", "example.test"), RcptParams())
    assert session.end_of_data(object()).discard == "trash"


def test_a_refused_stage_changes_nothing():
    class Rewrite:
        def rcpt(self, s, recipient, params):
            return Verdict(recipients=((Address("x", "y.test"), params),))

    session = ReceivePipeline([Rewrite(), OnlyRcpt(refuse(LATER))]).session("192.0.2.1")
    session.mail(None, MailParams())
    assert session.rcpt(BOB, RcptParams()).reply == LATER
    assert session.facts.recipients == []


@pytest.mark.parametrize(
    "name, value",
    [("X-Bad", "one\r\nTwo: injected"), ("X-Bad", "bare\nlf"), ("X-Bad", "nul\x00"), ("Bad:", "x")],
)
def test_header_fields_cannot_split_the_header(name, value):
    with pytest.raises(ValueError):
        HeaderField(name, value)
    assert HeaderField("X-Ok", "folded\r\n\tline").to_bytes() == b"X-Ok: folded\r\n\tline\r\n"


def test_a_verdict_never_carries_a_positive_reply():
    with pytest.raises(ValueError):
        Verdict(R.RECIPIENT_OK)


def test_the_builder_composes_each_stage_in_the_documented_order(tmp_path):
    config = load_config(None, {"data_dir": str(tmp_path)})
    pipeline = build_pipeline(config, PolicyDeps(Router(config), space=_Room()))
    assert pipeline.stage_checks("connect") == ["ConnectionRateLimit"]
    assert pipeline.stage_checks("mail") == [
        "MessageSizeLimit",
        "MessageRateLimit",
        "SenderMailboxLimit",
        "StorageReserve",
        "SenderOwnership",
    ]
    assert pipeline.stage_checks("rcpt") == [
        "RelayControl",
        "LocalRecipients",
        "RecipientMailboxLimit",
    ]
    assert pipeline.stage_checks("data") == ["StorageReserve", "RecipientMerge"]
    assert pipeline.stage_checks("end_of_data") == ["FromHeaderCheck"]
    assert pipeline.stage_checks("etrn") == ["EtrnTrust"]
    for stage in ("helo", "tls", "auth"):
        assert pipeline.stage_checks(stage) == []
    off = load_config(None, {"data_dir": str(tmp_path), "auth": {"check_from_header": False}})
    assert build_pipeline(off, PolicyDeps(Router(off))).stage_checks("end_of_data") == []
    unlimited = load_config(None, {"data_dir": str(tmp_path), "limits": {"message_size": 0}})
    assert "MessageSizeLimit" not in build_pipeline(
        unlimited, PolicyDeps(Router(unlimited))
    ).stage_checks("mail")


def test_a_size_over_the_limit_is_refused_at_mail_by_the_pipeline(tmp_path):
    config = load_config(None, {"data_dir": str(tmp_path), "limits": {"message_size": 1000}})
    session = build_pipeline(config, PolicyDeps(Router(config))).session("127.0.0.1")
    assert session.mail(BOB, MailParams(size=1001)).reply == R.MESSAGE_TOO_BIG  # RFC 1870 §6.1
    assert session.mail(BOB, MailParams(size=1000)).reply is None
    assert session.mail(BOB, MailParams()).reply is None


def test_facts_say_who_is_logged_in():
    facts = SessionFacts("192.0.2.1")
    assert not facts.authenticated
    facts.user = "alice@example.test"
    assert facts.authenticated


class _Room:
    def room_for(self, size: int = 0) -> bool:
        return True


def test_end_of_data_checks_read_the_headers_parsed(tmp_path):
    from pigeon.policy.message import SpoolMessage
    from pigeon.queue.model import Envelope, Recipient
    from pigeon.queue.store import QueueStore

    store = QueueStore(tmp_path / "queue", fsync=False)
    store.open()
    try:
        spool = store.new_spool(Envelope("", "", [Recipient("a@example.test")]))
        spool.write(
            b"Received: from x\r\n\tby y; date\r\nFrom : Alice\r\n <a@example.test>\r\n"
            b"Subject:  hi \r\nnot a field\r\n\r\nbody: not a header\r\n"
        )
        message = SpoolMessage(spool, header_limit=1000, eight_bit=False)
        assert message.headers() == [
            ("Received", "from x\tby y; date"),
            ("From", "Alice <a@example.test>"),
            ("Subject", "hi"),
        ]
        assert message.headers() is message.headers()  # parsed once
        spool.discard()
    finally:
        store.close()


def test_content_changes_of_end_of_data_reach_the_final_verdict():
    from pigeon.policy.api import HeaderEdit, NewSender

    class Milterish:
        def mail(self, s, sender, params):
            return Verdict(headers=(HeaderField("X-Mail", "1"),))

        def end_of_data(self, s, message):
            return Verdict(
                header_edits=(HeaderEdit("insert", "DKIM-Signature", "v=1", 0),),
                body=b"new\r\n",
                sender=NewSender(None),
            )

    class Discards:
        def end_of_data(self, s, message):
            return Verdict(discard="milter two", header_edits=(HeaderEdit("add", "X-Two", "2"),))

    session = ReceivePipeline([Milterish(), Discards()]).session("192.0.2.1")
    session.mail(BOB, MailParams())
    session.rcpt(BOB, RcptParams())
    final = session.end_of_data(object())
    assert [h.name for h in final.headers] == ["X-Mail"]
    assert [e.name for e in final.header_edits] == ["DKIM-Signature", "X-Two"]
    assert final.body == b"new\r\n" and final.sender == NewSender(None)
    assert final.discard == "milter two"


def test_disconnect_tells_the_checks_that_keep_something_per_connection(caplog):
    told = []

    class Keeper:
        def connect(self, s):
            return None

        def disconnect(self, s):
            told.append(s.client_ip)

    class Broken:
        def disconnect(self, s):
            raise RuntimeError("bug")

    pipeline = ReceivePipeline([Broken(), Keeper(), OnlyRcpt(None)])
    session = pipeline.session("192.0.2.7")
    with caplog.at_level(logging.ERROR, logger="pigeon.policy"):
        session.disconnect()
    assert told == ["192.0.2.7"]  # after one that raised
    assert "failed at disconnect" in caplog.text


def test_the_builder_puts_milters_last_in_order(tmp_path):
    milters = [
        {"name": "dkim", "socket": "unix:/run/dkim.sock"},
        {"name": "spam", "socket": "inet:127.0.0.1:11332", "default_action": "accept"},
    ]
    config = load_config(None, {"data_dir": str(tmp_path), "milters": milters})
    pipeline = build_pipeline(config, PolicyDeps(Router(config)))
    for stage in ("connect", "helo", "mail", "rcpt", "data", "end_of_data"):
        assert pipeline.stage_checks(stage)[-2:] == ["MilterCheck", "MilterCheck"], stage
    assert [c.name for c in pipeline.checks if hasattr(c, "disconnect")] == ["dkim", "spam"]
