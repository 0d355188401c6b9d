"""Verdict effects a plugin may ask for, end to end (issue 12 item 1): discard
(250, then dropped and logged), header fields removed, a transport chosen
for one recipient (the queue manager's routing honours it)."""

from __future__ import annotations

import re
import smtplib
import textwrap

import pytest

from pigeon.testing.live import free_port, maildir_messages, wait_for
from pigeon.testing.sink import SmtpSink

pytestmark = pytest.mark.e2e

#: Seconds to wait for what happens beside the SMTP reply (bounded polling,
#: no speed assumed: the machine may be loaded).
WAIT = 30

PLUGIN = """
from pigeon.api import accept, discard

class Plugin:
    def rcpt(self, session, recipient, params):
        if recipient.local == "trash":
            return discard("the trash can")
        if recipient.local == "filtered":
            return accept(transport="smtp:[127.0.0.1]:{port}")

    def end_of_data(self, session, message):
        if b"x-secret:" in message.header_section().lower():
            return accept(remove_headers=["X-Secret"], add_headers=[("X-Cleaned", "yes")])
"""


@pytest.fixture
def sink_port():
    return free_port()


@pytest.fixture
def server(pigeon_factory, tmp_path, sink_port):
    workdir = tmp_path / "p0"
    workdir.mkdir(parents=True)
    (workdir / "effects.py").write_text(textwrap.dedent(PLUGIN).replace("{port}", str(sink_port)))
    return pigeon_factory('[domains."example.test"]\n[[plugins]]\npath = "effects.py"\n')


def _send(server, recipients, message: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
        s.ehlo()
        assert s.mail("a@client.test")[0] == 250
        for rcpt in recipients:
            assert s.rcpt(rcpt)[0] == 250
        return s.data(message)


def test_discard_answers_250_and_drops_the_message(server):
    code, text = _send(
        server, ["alice@example.test", "trash@example.test"], b"Subject: x\r\n\r\nhi\r\n"
    )
    assert code == 250, text
    queue_id = re.search(rb"queued as (\w+)", text).group(1).decode()
    line = f"{queue_id}: from=<a@client.test>, to=<alice@example.test,trash@example.test>, "
    assert wait_for(
        timeout=WAIT, predicate=lambda: line + "reason=the trash can (discard)" in server.log()
    )
    assert server.command("queue", "list", text=True).stdout.count(queue_id) == 0
    assert maildir_messages(server.data_dir, "alice@example.test") == []


def test_removed_header_fields_do_not_arrive(server):
    message = (
        b"Subject: cleaned\r\nX-Secret: 42\r\nX-secret: folded\r\n  on two lines\r\n"
        b"To: alice@example.test\r\n\r\nbody X-Secret: stays in the body\r\n"
    )
    code, text = _send(server, ["alice@example.test"], message)
    assert code == 250, text
    queue_id = re.search(rb"queued as (\w+)", text).group(1)
    found = wait_for(
        timeout=WAIT, predicate=lambda: maildir_messages(server.data_dir, "alice@example.test")
    )
    content = found[0].read_bytes()
    assert b"X-Secret: 42" not in content and b"on two lines" not in content
    assert b"Subject: cleaned\n" in content and b"To: alice@example.test\n" in content
    assert content.endswith(b"\nbody X-Secret: stays in the body\n")
    assert b"X-Cleaned: yes\n" in content
    # Our Received: names the queue ID the client was given.
    assert re.search(
        rb"Received: .*\n\tby pigeon.test \(pigeon\) with ESMTP id " + queue_id, content
    )


def test_a_transport_chosen_at_rcpt_routes_that_recipient_only(server, sink_port):
    with SmtpSink("127.0.0.1", sink_port) as sink:
        code, text = _send(
            server,
            ["alice@example.test", "filtered@example.test"],
            b"Subject: routed\r\n\r\nhi\r\n",
        )
        assert code == 250, text
        dumped = wait_for(sink.messages, timeout=30)
        assert dumped, server.log()
        assert b"filtered@example.test" in dumped[0]
        assert b"alice@example.test" not in dumped[0].split(b"Subject:")[0].split(b"Received:")[0]
    assert wait_for(
        timeout=WAIT, predicate=lambda: maildir_messages(server.data_dir, "alice@example.test")
    )
    assert maildir_messages(server.data_dir, "filtered@example.test") == []
