"""The connection driver (net/smtpd.py, net/intake.py) with checks plugged into
its pipeline: the real driver over an in-memory stream, a real queue store.

What a check decides reaches the client and the queue: header fields land on
top of the committed message (above our Received:), quarantine commits on
hold, a recipient list changed at the end of the data is the one queued, a
421 at connect replaces the greeting, a HELO refusal answers RCPT, and an
end-of-data check reads the header section and the body as a stream.
"""

from __future__ import annotations

import asyncio

import pytest

from pigeon.net.services import ConnectionContext, ReceiveServices
from pigeon.net.smtpd import Connection
from pigeon.policy.api import HeaderField, Verdict, refuse
from pigeon.policy.pipeline import ReceivePipeline
from pigeon.proto import reply as R
from pigeon.proto.server import SessionConfig
from pigeon.queue.spool import SPILL_THRESHOLD
from pigeon.queue.store import QueueStore
from pigeon.testing.memstream import MemoryStream
from pigeon.testing.storage import content_bytes
from pigeon.testing.transcript import MEMORY_TLS
from pigeon.vocab.address import Address
from pigeon.vocab.states import QueueState

HELLO = b"EHLO client.example\r\n"
MAIL = b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"


class MailLogRecorder:
    """The mail log's methods the driver calls, recorded."""

    def __init__(self) -> None:
        self.lines: list[tuple] = []

    def log(self, queue_id, fields, detail=None) -> None:
        self.lines.append(("log", queue_id, detail, dict(fields)))

    def reject(self, queue_id, stage, ip, reply, **kw) -> None:
        self.lines.append(("reject", stage, reply))

    def session_end(self, what, where, host, ip) -> None:
        self.lines.append(("end", what, where))


class Server:
    def __init__(self, tmp_path, checks: list[object]) -> None:
        self.store = QueueStore(tmp_path / "queue", fsync=False)
        self.store.open()
        self.queued: list[str] = []
        self.maillog = MailLogRecorder()
        self.checks = checks

    def close(self) -> None:
        self.store.close()

    async def talk(self, *writes: bytes) -> str:
        """Play `writes` (one at a time, each answered), then end the connection."""
        stream = MemoryStream(MEMORY_TLS)
        services = ReceiveServices(
            store=self.store,
            pipeline=ReceivePipeline(self.checks),
            maillog=self.maillog,
            on_queued=lambda envelope: self.queued.append(envelope.queue_id),
            clock=stream.clock,
        )
        context = ConnectionContext(services, SessionConfig(hostname="mx.example.test"))
        task = asyncio.create_task(Connection(stream, context).run())
        task.add_done_callback(lambda _: stream.finished())
        await stream.settled()
        for data in writes:
            if stream.closed:
                break
            stream.send(data)
            await stream.settled()
        stream.send_eof()
        await asyncio.wait_for(task, 10)
        return stream.output.decode()

    def content(self, queue_id: str) -> bytes:
        return content_bytes(self.store, queue_id)

    def state(self, queue_id: str) -> str:
        return self.store.states([queue_id])[queue_id]


@pytest.fixture
def server(tmp_path):
    servers: list[Server] = []

    def make(*checks: object) -> Server:
        servers.append(Server(tmp_path / str(len(servers)), list(checks)))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def body(size: int) -> bytes:
    line = b"x" * 70 + b"\r\n"
    return b"Subject: test\r\n\r\n" + line * (size // len(line))


class Stamp:
    def connect(self, s):
        return Verdict(headers=(HeaderField("X-Connect", s.client_ip),))

    def end_of_data(self, s, message):
        return Verdict(headers=(HeaderField("Authentication-Results", "mx; none"),))


@pytest.mark.parametrize("size", [1000, SPILL_THRESHOLD + 10_000], ids=["memory", "spilled"])
def test_header_fields_of_checks_go_on_top_of_received(server, size):
    s = server(Stamp())
    out = asyncio.run(s.talk(HELLO, MAIL, body(size) + b".\r\n"))
    assert "250 2.0.0 Ok: queued as" in out and len(s.queued) == 1
    stored = s.content(s.queued[0])
    assert stored.startswith(
        b"X-Connect: 127.0.0.1\r\nAuthentication-Results: mx; none\r\nReceived: from client.example"
    )
    assert stored.endswith(body(size))
    envelope = s.store.load(s.queued[0])
    assert envelope.size == len(stored)  # the size counts the added fields


def test_quarantine_commits_on_hold_and_is_not_handed_to_delivery(server):
    class Suspicious:
        def data(self, s):
            return Verdict(quarantine="looks like spam")

    s = server(Suspicious())
    out = asyncio.run(s.talk(HELLO, MAIL, body(100) + b".\r\n"))
    queue_id = out.split("queued as ")[1].split()[0]
    assert s.queued == []  # waits for `pigeon queue release`
    assert s.state(queue_id) == QueueState.HOLD
    assert ("log", queue_id, "hold", {"reason": "looks like spam"}) in s.maillog.lines


def test_end_of_data_checks_read_the_header_section_and_stream_the_body(server):
    seen: list[tuple[bytes, bytes]] = []

    class Reader:
        def end_of_data(self, s, message):
            with message.body() as stream:
                seen.append((message.header_section(), stream.read()))
            return refuse(R.reply(550, "5.7.1", "Error: content refused"))

    s = server(Reader())
    data = body(SPILL_THRESHOLD + 500)
    out = asyncio.run(s.talk(HELLO, MAIL, data + b".\r\n"))
    assert "550 5.7.1 Error: content refused" in out and s.queued == []
    header, streamed = seen[0]
    assert header.startswith(b"Received: from client.example") and header.endswith(
        b"Subject: test\r\n"
    )
    assert streamed == data[len(b"Subject: test\r\n\r\n") :]
    assert ("reject", "END-OF-MESSAGE", R.reply(550, "5.7.1", "Error: content refused")) in (
        s.maillog.lines
    )
    assert not list((s.store.root / "tmp").iterdir())  # the refused spool is gone


def test_recipients_changed_at_the_end_of_data_are_the_ones_queued(server):
    class Archive:
        def end_of_data(self, s, message):
            extra = (Address("archive", "example.test"), s.recipients[0][1])
            return Verdict(recipients=(*s.recipients, extra))

    s = server(Archive())
    asyncio.run(s.talk(HELLO, MAIL, body(100) + b".\r\n"))
    envelope = s.store.load(s.queued[0])
    assert [r.address for r in envelope.recipients] == ["b@example.test", "archive@example.test"]


def test_a_421_at_connect_replaces_the_greeting(server):
    class Busy:
        def connect(self, s):
            return refuse(R.reply(421, "4.7.0", "mx.example.test Error: try later"))

    s = server(Busy())
    out = asyncio.run(s.talk(HELLO))
    assert out == "421 mx.example.test Error: try later\r\n"  # no EHLO yet: no 4.7.0
    assert ("reject", "CONNECT", R.reply(421, "4.7.0", "mx.example.test Error: try later")) in (
        s.maillog.lines
    )


def test_a_helo_refusal_answers_every_rcpt(server):
    class NoLocalhost:
        def helo(self, s):
            return (
                refuse(R.reply(554, "5.7.1", "Error: Helo command rejected"))
                if (s.helo == "localhost")
                else None
            )

    s = server(NoLocalhost())
    out = asyncio.run(
        s.talk(b"EHLO localhost\r\n", b"MAIL FROM:<a@example.test>\r\n", b"RCPT TO:<b@x.test>\r\n")
    )
    assert "250 2.1.0 Ok" in out and out.endswith("554 5.7.1 Error: Helo command rejected\r\n")


def test_a_421_from_a_check_closes_the_session(server):
    s = server(
        type("Full", (), {"rcpt": lambda self, s, r, p: refuse(R.reply(421, "4.3.2", "bye"))})()
    )
    out = asyncio.run(s.talk(HELLO, b"MAIL FROM:<>\r\n", b"RCPT TO:<b@x.test>\r\n", b"NOOP\r\n"))
    assert out.endswith("421 4.3.2 bye\r\n")  # nothing after it: closed


@pytest.mark.parametrize("size", [1000, SPILL_THRESHOLD + 10_000], ids=["memory", "spilled"])
def test_content_changes_and_a_new_sender_are_what_is_queued(server, size):
    from pigeon.policy.api import HeaderEdit, NewSender
    from pigeon.proto.params import MailParams

    class Milterish:  # what policy/milter.py makes of a milter's modifications
        def end_of_data(self, s, message):
            return Verdict(
                headers=(HeaderField("X-Top", "1"),),
                header_edits=(
                    HeaderEdit("insert", "DKIM-Signature", "v=1", 0),
                    HeaderEdit("change", "Subject", "changed", 1),
                ),
                body=b"new body\r\n",
                sender=NewSender(Address("bounces", "example.test"), MailParams(ret="HDRS")),
            )

    s = server(Milterish())
    out = asyncio.run(s.talk(HELLO, MAIL, body(size) + b".\r\n"))
    assert "250 2.0.0 Ok: queued as" in out
    stored = s.content(s.queued[0])
    assert stored.startswith(b"X-Top: 1\r\nDKIM-Signature: v=1\r\nReceived: from client.example")
    assert stored.endswith(b"\r\nSubject: changed\r\n\r\nnew body\r\n")
    envelope = s.store.load(s.queued[0])
    assert envelope.sender == "bounces@example.test" and envelope.params.ret == "HDRS"
    assert envelope.size == len(stored)
