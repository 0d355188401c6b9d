"""The HTTP API's submission through the receive pipeline (net/apisession.py).

A real pipeline of small checks, a real queue store and the real intake:
the stages are asked in SMTP's order with the facts of an authenticated
submission session, what a check adds lands on the committed message, the
first refusal ends it (nothing queued, the rejection logged, the checks
told the "connection" ended), and the content checks of DATA apply.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from test_connection import MailLogRecorder

from pigeon.net.apisession import Refused, submit_message
from pigeon.net.services import ConnectionContext, ReceiveServices
from pigeon.policy.api import HeaderField, Verdict, refuse
from pigeon.policy.pipeline import ReceivePipeline
from pigeon.policy.submission import FromHeaderCheck, SenderOwnership
from pigeon.proto import reply as R
from pigeon.proto.server import SessionConfig
from pigeon.queue.store import QueueStore
from pigeon.testing.storage import content_bytes
from pigeon.vocab.address import Address

USER = "alice@example.test"
MESSAGE = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"


class Recorder:
    """Every stage, with what the facts said then; a header at the end."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def connect(self, s):
        self.seen.append(("connect", s.client_ip, s.client_port, s.role))

    def helo(self, s):
        self.seen.append(("helo", s.helo, s.esmtp))

    def auth(self, s):
        self.seen.append(("auth", s.user, s.owned))

    def mail(self, s, sender, params):
        self.seen.append(("mail", str(sender), params.size, params.body, s.user))

    def rcpt(self, s, rcpt, params):
        self.seen.append(("rcpt", str(rcpt)))

    def data(self, s):
        self.seen.append(("data", [str(a) for a, _ in s.recipients]))

    def end_of_data(self, s, message):
        self.seen.append(("end_of_data", message.header_section().count(b"Received:")))
        return Verdict(headers=(HeaderField("X-Seen", "yes"),))

    def disconnect(self, s):
        self.seen.append(("disconnect",))


class Refuser:
    def __init__(self, stage: str, reply: R.Reply) -> None:
        self.stage, self.reply = stage, reply

    def __getattr__(self, name):
        if name != self.stage:
            raise AttributeError(name)
        return lambda *args: refuse(self.reply)


@pytest.fixture
def store(tmp_path):
    store = QueueStore(tmp_path / "queue", fsync=False)
    store.open()
    yield store
    store.close()


def _submit(
    store, checks, message=MESSAGE, *, rcpts=("bob@example.test",), sender=USER, maillog=None, **cfg
):
    maillog = maillog if maillog is not None else MailLogRecorder()
    queued: list = []
    services = ReceiveServices(
        store=store, pipeline=ReceivePipeline(checks), maillog=maillog, on_queued=queued.append
    )
    config = dataclasses.replace(SessionConfig(hostname="mx.example.test"), **cfg)
    context = ConnectionContext(services, config, "submission")

    async def run():
        return await submit_message(
            context,
            message,
            sender=Address(*sender.split("@")),
            recipients=[Address(*r.split("@")) for r in rcpts],
            user=USER,
            owned=frozenset({USER}),
            client=("192.0.2.7", 4711),
            helo="shop-token",
        )

    return asyncio.run(run()), queued, maillog


def test_every_stage_in_smtp_order_with_the_accounts_facts(store):
    seen = Recorder()
    queue_id, queued, maillog = _submit(store, [seen], rcpts=("bob@example.test", "c@x.test"))
    assert [s[0] for s in seen.seen] == [
        "connect", "helo", "auth", "mail", "rcpt", "rcpt", "data", "end_of_data", "disconnect"
    ]  # fmt: skip
    assert seen.seen[0] == ("connect", "192.0.2.7", 4711, "submission")
    assert seen.seen[1] == ("helo", "shop-token", True)
    assert seen.seen[2] == ("auth", USER, frozenset({USER}))
    assert seen.seen[3] == ("mail", USER, len(MESSAGE), None, USER)
    assert seen.seen[6] == ("data", ["bob@example.test", "c@x.test"])
    assert seen.seen[7] == ("end_of_data", 1)  # our Received: is on top of the content
    assert [e.queue_id for e in queued] == [queue_id]
    envelope = queued[0]
    assert envelope.sender == USER and envelope.protocol == "HTTP"
    assert envelope.client_address == "192.0.2.7" and envelope.client_helo == "shop-token"
    content = content_bytes(store, queue_id)
    assert content.startswith(b"X-Seen: yes\r\nReceived: from shop-token ([192.0.2.7])")
    assert f"with HTTP id {queue_id}".encode() in content and content.endswith(MESSAGE)
    assert ("log", queue_id, "queued") == maillog.lines[-1][:3]


def test_a_sender_the_account_does_not_own_is_refused_at_mail(store):
    seen = Recorder()
    with pytest.raises(Refused) as caught:
        _submit(store, [SenderOwnership(), seen], sender="carol@example.test")
    assert (caught.value.stage, caught.value.reply) == ("MAIL", R.SENDER_NOT_OWNED)
    assert caught.value.address == "carol@example.test"
    # Nothing after MAIL was asked; the checks were told the connection ended.
    assert [s[0] for s in seen.seen] == ["connect", "helo", "auth", "disconnect"]
    assert store.list() == []


def test_the_from_field_is_checked_at_the_end(store):
    forged = MESSAGE.replace(b"From: alice@", b"From: carol@")
    with pytest.raises(Refused) as caught:
        _submit(store, [SenderOwnership(), FromHeaderCheck()], forged)
    assert (caught.value.stage, caught.value.reply) == ("END-OF-MESSAGE", R.FROM_NOT_OWNED)


@pytest.mark.parametrize(
    ("stage", "reply", "where"),
    [
        ("connect", R.reply(421, "4.7.0", "too many connections"), "CONNECT"),
        ("connect", R.reply(554, "5.7.1", "go away"), "RCPT"),  # held, as smtpd_delay_reject
        ("helo", R.reply(550, "5.7.1", "bad helo"), "RCPT"),
        ("auth", R.reply(535, "5.7.8", "no"), "AUTH"),
        ("mail", R.reply(450, "4.7.1", "too much mail"), "MAIL"),
        ("rcpt", R.reply(550, "5.1.1", "no such user"), "RCPT"),
        ("data", R.reply(452, "4.3.1", "no room"), "DATA"),
        ("end_of_data", R.reply(554, "5.7.1", "spam"), "END-OF-MESSAGE"),
    ],
)
def test_the_first_refusal_ends_it_and_nothing_is_queued(store, stage, reply, where):
    seen = Recorder()
    with pytest.raises(Refused) as caught:
        _submit(store, [Refuser(stage, reply), seen])
    assert (caught.value.stage, caught.value.reply) == (where, reply)
    assert seen.seen[-1] == ("disconnect",)
    assert "end_of_data" not in [s[0] for s in seen.seen]
    assert store.list() == []


def test_a_refusal_is_logged_as_the_smtp_sessions_are(store):
    maillog = MailLogRecorder()
    with pytest.raises(Refused):
        _submit(store, [Refuser("rcpt", R.reply(550, "5.1.1", "no such user"))], maillog=maillog)
    assert maillog.lines == [("reject", "RCPT", R.reply(550, "5.1.1", "no such user"))]
    assert store.list() == []


def test_the_recipient_bound_of_the_protocol(store):
    with pytest.raises(Refused) as caught:
        _submit(store, [], rcpts=("a@x.test", "b@x.test"), max_recipients=1)
    assert (caught.value.stage, caught.value.reply) == ("RCPT", R.TOO_MANY_RECIPIENTS)
    assert caught.value.address == "b@x.test"


@pytest.mark.parametrize(
    ("message", "reply"),
    [
        (MESSAGE + b"x" * 1200 + b"\r\n", R.TEXT_LINE_TOO_LONG),
        (MESSAGE + b"a\x00b\r\n", R.NUL_IN_DATA),
        (b"Received: x\r\n" * 5 + MESSAGE, R.MAIL_LOOP),
    ],
    ids=["long-line", "nul", "hops"],
)
def test_the_content_checks_of_data(store, message, reply):
    with pytest.raises(Refused) as caught:
        _submit(store, [], message, hop_limit=3)
    assert (caught.value.stage, caught.value.reply) == ("END-OF-MESSAGE", reply)


def test_eight_bit_content_is_declared_8bitmime(store):
    seen = Recorder()
    body = MESSAGE.replace(b"Hello.", "Grüße.".encode())
    queue_id, _, _ = _submit(store, [seen], body, eight_bit_undeclared="reject")
    assert ("mail", USER, len(body), "8BITMIME", USER) in seen.seen
    assert content_bytes(store, queue_id).endswith(body)
