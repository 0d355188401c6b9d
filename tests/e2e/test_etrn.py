"""ETRN (RFC 1985) against a live server: a trusted client makes the deferred
mail for a domain go out now; an untrusted one is refused."""

from __future__ import annotations

import smtplib
import socket

import pytest

from pigeon.testing.live import free_port, recv_reply, wait_for
from pigeon.testing.sink import SmtpSink

pytestmark = pytest.mark.e2e


def etrn_from(source_ip: str, port: int, node: str) -> bytes:
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source_ip, 0))
    with s:
        recv_reply(s)
        s.sendall(b"EHLO trusted.example\r\n")
        assert b"ETRN" in recv_reply(s)
        s.sendall(f"ETRN {node}\r\n".encode())
        return recv_reply(s)


def test_etrn_flushes_for_trusted_clients_only(pigeon_factory):
    peer_port = free_port()
    server = pigeon_factory(
        'relay_networks = ["127.0.0.1/32"]\n[domains."localhost"]\n'
        f'[transports]\n"later.test" = "smtp:[127.0.0.9]:{peer_port}"\n'
        "[smtp]\netrn = true\n"
        # Retries far in the future: only ETRN can make the message go now.
        "[queue]\nmin_backoff = 3600.0\nmax_backoff = 3600.0\n"
    )
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as c:
        c.sendmail("a@localhost", ["user@later.test"], b"Subject: etrn\r\n\r\nwaiting\r\n")
    assert wait_for(lambda: "status=deferred" in server.log(), timeout=20), server.log()

    refused = etrn_from("127.0.0.2", server.port, "later.test")
    assert refused.startswith(b"554 5.7.1"), refused

    with SmtpSink("127.0.0.9", peer_port) as sink:
        reply = etrn_from("127.0.0.1", server.port, "later.test")
        assert reply.startswith(b"250 2.0.0"), reply
        got = wait_for(sink.messages, timeout=20)
        assert got and b"<user@later.test>" in got[0]
    # Nothing left for the domain now.
    assert etrn_from("127.0.0.1", server.port, "later.test").startswith(b"251 2.0.0")
