"""Addresses with quoted local parts, relayed through pigeon to real peers.

A quoted local part may hold ">", blanks, quotes or backslashes (RFC 5321
§4.1.2). pigeon's server accepts such addresses, so its client must send
them on (proto/client.py Rule 6) instead of deferring the message for days
and counting each refusal against the next hop until it is marked dead for
everyone. Peers: Postfix's smtp-sink behind a `[transports]` route, and a
private Postfix instance.
"""

from __future__ import annotations

import socket

import pytest

from pigeon.testing.live import free_port, recv_reply, wait_for
from pigeon.testing.sink import SmtpSink

pytestmark = pytest.mark.e2e


def send_raw(port: int, sender: str, rcpts: list[str]) -> bytes:
    """One transaction with the paths written exactly as given."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        recv_reply(s)
        s.sendall(b"EHLO client.test\r\n")
        recv_reply(s)
        s.sendall(f"MAIL FROM:<{sender}>\r\n".encode())
        replies = recv_reply(s)
        for rcpt in rcpts:
            s.sendall(f"RCPT TO:<{rcpt}>\r\n".encode())
            replies += recv_reply(s)
        s.sendall(b"DATA\r\n")
        replies += recv_reply(s)
        s.sendall(b"Subject: quoted\r\n\r\nhello\r\n.\r\n")
        replies += recv_reply(s)
        s.sendall(b"QUIT\r\n")
        return replies


def test_quoted_addresses_are_relayed_to_smtp_sink(pigeon_factory):
    sink_port = free_port()
    with SmtpSink("127.0.0.1", sink_port) as sink:
        server = pigeon_factory(
            f'relay_networks = ["127.0.0.0/8"]\n[domains."localhost"]\n'
            f'[transports]\n"dest.test" = "smtp:[127.0.0.1]:{sink_port}"\n'
            f"[queue]\nrun_interval = 1.0\nmin_backoff = 1.0\nmax_backoff = 2.0\n"
        )
        replies = send_raw(
            server.port,
            '"a>b"@src.test',
            ['"x>y"@dest.test', '"two words\\\\ \\"q\\""@dest.test', "plain@dest.test"],
        )
        assert replies.count(b"250 ") == 5 and b"354 " in replies, replies
        assert wait_for(lambda: sink.messages(), timeout=20), server.log()
        [dump] = sink.messages()
        assert b'X-Mail-Args: <"a>b"@src.test>' in dump, dump[:400]
        assert b'X-Rcpt-Args: <"x>y"@dest.test>' in dump
        assert b'X-Rcpt-Args: <"two words\\\\ \\"q\\""@dest.test>' in dump
        assert b"X-Rcpt-Args: <plain@dest.test>" in dump
        assert wait_for(lambda: server.log().count("status=sent") == 3, timeout=20), server.log()
        assert "status=deferred" not in server.log() and "suspended" not in server.log()
