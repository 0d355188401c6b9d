"""The postscreen-like tests on a live pigeon's port 25 listener: a client that
talks before the greeting, one that pipelines before the EHLO reply, and a
polite one that is unaffected."""

from __future__ import annotations

import socket

import pytest

from pigeon.testing.live import recv_reply, wait_for

pytestmark = pytest.mark.e2e

CONFIG = (
    '[domains."example.test"]\nmailboxes = ["alice"]\n'
    '[postscreen]\ngreet_wait = 2\ngreet_action = "enforce"\npipelining_action = "drop"\n'
)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (bounded by the socket's timeout)."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from pigeon.testing.live import PigeonProcess

    proc = PigeonProcess(tmp_path_factory.mktemp("postscreen"), CONFIG)
    proc.start()
    yield proc
    proc.stop()


def test_a_client_that_talks_first_is_refused_at_rcpt(server):
    with _connect(server.port) as s:
        s.sendall(b"EHLO early.example\r\n")  # before the greeting
        replies = recv_reply(s)
        if b"250 " not in replies:  # the greeting and the EHLO reply may come apart
            replies += recv_reply(s)
        assert replies.startswith(b"220 ") and b"250-" in replies, replies
        s.sendall(b"MAIL FROM:<joe@elsewhere.example>\r\n")
        assert recv_reply(s).startswith(b"250")
        s.sendall(b"RCPT TO:<alice@example.test>\r\n")
        rcpt = recv_reply(s)
        assert rcpt.startswith(b"550 5.5.1 ") and b"talked before the greeting" in rcpt, rcpt
    assert wait_for(
        lambda: "PREGREET 20 after " in server.log() and "from [127.0.0.1]" in server.log()
    )


def test_a_client_that_pipelines_after_ehlo_is_dropped(server):
    with _connect(server.port) as s:
        assert recv_reply(s).startswith(b"220 ")
        s.sendall(b"EHLO fast.example\r\nMAIL FROM:<joe@elsewhere.example>\r\n")
        out = _read_all(s)
    assert out.endswith(b"521 5.5.1 Error: SMTP protocol synchronization error, closing\r\n"), out
    assert b"250 2.1.0" not in out  # the MAIL was not answered
    assert wait_for(lambda: "COMMAND PIPELINING from [127.0.0.1] after EHLO (drop)" in server.log())


def test_a_polite_client_is_unaffected(server):
    with _connect(server.port) as s:
        assert recv_reply(s).startswith(b"220 ")
        s.sendall(b"EHLO polite.example\r\n")
        assert recv_reply(s).startswith(b"250-")
        # PIPELINING was offered: a group of MAIL and RCPT is allowed now.
        s.sendall(b"MAIL FROM:<joe@elsewhere.example>\r\nRCPT TO:<alice@example.test>\r\n")
        replies = recv_reply(s)
        if replies.count(b"\r\n") < 2:
            replies += recv_reply(s)
        assert replies.startswith(b"250 2.1.0") and b"\r\n250 2.1.5" in replies, replies
