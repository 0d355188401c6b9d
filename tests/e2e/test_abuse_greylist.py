"""Greylisting on a live pigeon: a first attempt gets 450, the retry after the
delay passes (across a restart: the triplet is on disk) and the message is
delivered; an allowed client is not greylisted."""

from __future__ import annotations

import signal
import socket
import sqlite3

import pytest

from pigeon.testing.live import maildir_messages, recv_reply, wait_for

pytestmark = pytest.mark.e2e

CONFIG = (
    '[domains."example.test"]\nmailboxes = ["alice"]\n'
    "[greylist]\nenabled = true\ndelay = 1\nauto_allow_clients = 0\n"
    'allow_clients = ["127.0.0.12/32"]\n'
)


def _attempt(port: int, source: str) -> bytes:
    """One delivery attempt: the RCPT reply, and the message when it is accepted."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        assert recv_reply(s).startswith(b"220")
        for line in (b"EHLO client.example", b"MAIL FROM:<joe@elsewhere.example>"):
            s.sendall(line + b"\r\n")
            assert recv_reply(s).startswith(b"250")
        s.sendall(b"RCPT TO:<alice@example.test>\r\n")
        rcpt = recv_reply(s)
        if rcpt.startswith(b"250"):
            s.sendall(b"DATA\r\n")
            assert recv_reply(s).startswith(b"354")
            s.sendall(b"Subject: greylisted\r\n\r\nhello\r\n.\r\n")
            assert recv_reply(s).startswith(b"250")
        s.sendall(b"QUIT\r\n")
        recv_reply(s)
    return rcpt


def test_a_retry_after_the_delay_passes_even_after_a_restart(pigeon_factory):
    server = pigeon_factory(CONFIG)
    first = _attempt(server.port, "127.0.0.11")
    assert first.startswith(b"450 4.7.1 Greylisted, please try again in 1 seconds"), first
    server.stop()
    with sqlite3.connect(server.data_dir / "abuse.db") as db:
        rows = db.execute("SELECT key FROM state WHERE kind = 'greylist'").fetchall()
    assert rows == [("127.0.0.0/24 joe@elsewhere.example alice@example.test",)]
    server.start()
    assert wait_for(lambda: _attempt(server.port, "127.0.0.11").startswith(b"250"), timeout=20)
    assert wait_for(lambda: len(maildir_messages(server.data_dir, "alice@example.test")) == 1)
    # The triplet passed: the next message is not delayed at all.
    assert _attempt(server.port, "127.0.0.11").startswith(b"250")


def test_an_allowed_client_is_not_greylisted(pigeon_factory):
    server = pigeon_factory(CONFIG)
    assert _attempt(server.port, "127.0.0.12").startswith(b"250")


def test_greylisting_is_turned_on_by_a_reload(pigeon_factory):
    server = pigeon_factory('[domains."example.test"]\nmailboxes = ["alice"]\n')
    assert _attempt(server.port, "127.0.0.13").startswith(b"250")
    server.config_path.write_text(server.config_path.read_text() + CONFIG.split("\n", 2)[2])
    server.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload: applied" in server.log(), timeout=15), server.log()
    assert _attempt(server.port, "127.0.0.14").startswith(b"450 4.7.1 Greylisted")
