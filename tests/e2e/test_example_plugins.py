"""The three example plugins of contrib/plugins/, each with a live pigeon: a
webhook on receipt (a loopback HTTP server hears it), an archive copy to a
directory, an RFC 3834 auto-responder (replies once per sender per period,
never to bounces, lists or auto-replies; its memory survives a restart)."""

from __future__ import annotations

import json
import smtplib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pigeon.testing.live import maildir_messages, wait_for

pytestmark = pytest.mark.e2e

#: Seconds to wait for what happens beside the SMTP reply (bounded polling,
#: no speed assumed: the machine may be loaded).
WAIT = 30

PLUGINS = Path(__file__).resolve().parents[2] / "contrib" / "plugins"
DOMAIN = '[domains."example.test"]\nmailboxes = ["alice", "bob", "carol"]\n'


def _send(server, sender: str, recipients: list[str], message: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
        assert s.sendmail(sender, recipients, message) == {}  # every recipient accepted


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append((dict(self.headers), json.loads(body)))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.posts = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.mark.parametrize("wait", ["true", "false"])
def test_the_webhook_posts_each_received_message(pigeon_factory, http_endpoint, wait):
    port = http_endpoint.server_address[1]
    server = pigeon_factory(
        DOMAIN + f'[[plugins]]\npath = "{PLUGINS / "webhook.py"}"\n[plugins.config]\n'
        f'url = "http://127.0.0.1:{port}/mail"\nheaders = ["X-Token: s3cret"]\nwait = {wait}\n'
    )
    message = b"Subject: hello hook\r\nMessage-ID: <m1@client.test>\r\n\r\nhi\r\n"
    _send(server, "carol@example.test", ["alice@example.test", "bob@example.test"], message)
    assert wait_for(timeout=WAIT, predicate=lambda: http_endpoint.posts)
    headers, report = http_endpoint.posts[0]
    assert headers["X-Token"] == "s3cret" and headers["Content-Type"] == "application/json"
    assert report["sender"] == "carol@example.test"
    assert report["recipients"] == ["alice@example.test", "bob@example.test"]
    assert (report["subject"], report["message_id"]) == ("hello hook", "<m1@client.test>")
    assert report["client_ip"] == "127.0.0.1" and report["size"] > len(message)
    assert wait_for(
        timeout=WAIT, predicate=lambda: f"{report['queue_id']}: client=[127.0.0.1]" in server.log()
    )


def test_a_webhook_that_must_be_heard_refuses_with_451_when_it_is_not(pigeon_factory):
    server = pigeon_factory(
        DOMAIN + f'[[plugins]]\npath = "{PLUGINS / "webhook.py"}"\n[plugins.config]\n'
        'url = "http://127.0.0.1:9/nothing-listens"\nwait = true\n'
    )
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
        s.ehlo()
        s.mail("carol@example.test")
        s.rcpt("alice@example.test")
        code, text = s.data(b"Subject: x\r\n\r\nhi\r\n")
    assert (code, text[:5]) == (451, b"4.3.0")
    assert wait_for(timeout=WAIT, predicate=lambda: "ConnectionRefusedError" in server.log())


def test_the_archive_keeps_a_copy_of_each_message(pigeon_factory, tmp_path):
    archive = tmp_path / "archive"
    server = pigeon_factory(
        DOMAIN + f'[[plugins]]\npath = "{PLUGINS / "archive.py"}"\n[plugins.config]\n'
        f'directory = "{archive}"\n'
    )
    body = b"line\r\n" * 50_000  # spilled to disk: the copy streams it
    _send(server, "carol@example.test", ["alice@example.test"], b"Subject: keep me\r\n\r\n" + body)
    copies = wait_for(timeout=WAIT, predicate=lambda: sorted(archive.glob("*.eml")))
    assert len(copies) == 1
    copy = copies[0].read_bytes()
    assert copy.startswith(b"Received: from ") and copies[0].stem.encode() in copy.split(b"\r\n")[1]
    assert copy.endswith(b"Subject: keep me\r\n\r\n" + body)
    assert wait_for(
        timeout=WAIT, predicate=lambda: maildir_messages(server.data_dir, "alice@example.test")
    )


AUTORESPONDER = (
    f'[[plugins]]\npath = "{PLUGINS / "autoresponder.py"}"\n[plugins.config]\n'
    'addresses = ["alice@example.test"]\ntext = "I am away."\nperiod = 3600\n'
)


def _replies(server, to: str = "carol@example.test") -> list[bytes]:
    return [p.read_bytes() for p in maildir_messages(server.data_dir, to)]


def _mail(subject: str, extra: str = "") -> bytes:
    return (
        f"Subject: {subject}\r\nMessage-ID: <{subject}@client.test>\r\n{extra}\r\nhi\r\n".encode()
    )


def test_the_autoresponder_answers_once_per_sender_and_never_to_lists_or_bounces(pigeon_factory):
    server = pigeon_factory(DOMAIN + AUTORESPONDER)
    _send(server, "carol@example.test", ["alice@example.test"], _mail("first"))
    replies = wait_for(timeout=WAIT, predicate=lambda: _replies(server))
    assert len(replies) == 1
    reply = replies[0]
    assert b"Return-Path: <>\n" in reply  # sent from the null reverse-path
    assert b"From: alice@example.test\n" in reply and b"To: carol@example.test\n" in reply
    assert b"Subject: Auto: first\n" in reply and b"Auto-Submitted: auto-replied\n" in reply
    assert b"In-Reply-To: <first@client.test>\n" in reply and reply.endswith(b"\n\nI am away.\n")

    def skipped(why: str) -> bool:
        return why in server.log()

    _send(server, "carol@example.test", ["alice@example.test"], _mail("second"))
    assert wait_for(
        timeout=WAIT,
        predicate=lambda: skipped("carol@example.test was answered for alice@example.test"),
    )
    for sender, extra, why in [
        (
            "bob@example.test",
            "List-Id: <news.example.test>\r\n",
            "no auto-reply: list mail (List-Id)",
        ),
        ("bob@example.test", "Precedence: bulk\r\n", "no auto-reply: Precedence: bulk"),
        (
            "bob@example.test",
            "Auto-Submitted: auto-generated\r\n",
            "Auto-Submitted: auto-generated",
        ),
        ("", "", "no auto-reply: null sender (a bounce)"),
        ("MAILER-DAEMON@example.test", "", "is a mailer or list address"),
    ]:
        _send(server, sender, ["alice@example.test"], _mail("skipped", extra))
        assert wait_for(timeout=WAIT, predicate=lambda: skipped(why)), why
    assert len(maildir_messages(server.data_dir, "alice@example.test")) == 7
    assert len(_replies(server)) == 1 and _replies(server, "bob@example.test") == []

    # The memory is on disk: a restart does not reset it.
    server.stop()
    server.start()
    _send(server, "carol@example.test", ["alice@example.test"], _mail("third"))
    assert wait_for(
        timeout=WAIT,
        predicate=lambda: server.log().count("was answered for alice@example.test") == 2,
    )
    assert len(_replies(server)) == 1
    # Another sender is answered.
    _send(server, "bob@example.test", ["alice@example.test", "carol@example.test"], _mail("bob"))
    assert wait_for(timeout=WAIT, predicate=lambda: _replies(server, "bob@example.test"))
