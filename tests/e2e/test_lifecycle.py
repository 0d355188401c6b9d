"""Connection limits, pregreet, timeouts and SIGTERM drain against a live server."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from pigeon.testing.live import maildir_messages, recv_reply, wait_for

pytestmark = pytest.mark.e2e


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def refused(port: int) -> bool:
    try:
        connect(port).close()
    except ConnectionRefusedError:
        return True
    return False


def test_per_ip_connection_limit(pigeon_factory):
    server = pigeon_factory("[limits]\nconnections_per_ip = 3\n")
    held = [connect(server.port) for _ in range(3)]
    try:
        for s in held:
            assert recv_reply(s).startswith(b"220")
        extra = connect(server.port)
        assert recv_reply(extra).startswith(b"421 4.7.0")
        assert extra.recv(100) == b""  # and closed
        extra.close()
    finally:
        for s in held:
            s.close()

    # Once the others are gone (the server notices their close a moment
    # later), a new client is served again.
    def served() -> bool:
        with connect(server.port) as s:
            return recv_reply(s).startswith(b"220")

    assert wait_for(served, timeout=10)


def test_total_connection_limit(pigeon_factory):
    server = pigeon_factory("[limits]\nconnections = 2\n")
    held = [connect(server.port) for _ in range(2)]
    for s in held:
        recv_reply(s)
    extra = connect(server.port)
    assert recv_reply(extra).startswith(b"421 4.7.0")
    for s in held + [extra]:
        s.close()


def test_client_talking_before_greeting_is_refused(pigeon_factory):
    server = pigeon_factory("[timeouts]\ngreet_pause = 0.5\n")
    s = connect(server.port)
    s.sendall(b"EHLO early.example\r\n")
    data = recv_reply(s)
    # No EHLO yet, so no enhanced status code (RFC 2034 §3).
    assert data.startswith(b"554 ") and b"talked before greeting" in data, data
    assert s.recv(100) == b""
    s.close()
    # A patient client gets the greeting after the pause.
    s = connect(server.port)
    assert recv_reply(s).startswith(b"220")
    s.close()


def test_command_deadline_not_extended_by_dripping(pigeon_factory):
    server = pigeon_factory("[timeouts]\ncommand = 1.0\n")
    s = connect(server.port)
    recv_reply(s)
    start = time.monotonic()
    # Drip one byte every 0.2 s: the whole command must still arrive within 1 s.
    got = b""
    s.settimeout(0.2)
    for ch in b"EHLO dripping.example.long.name\r\n":
        try:
            s.sendall(bytes([ch]))
            got += s.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            break
        if got:
            break
    s.settimeout(5)
    while b"\r\n" not in got:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    assert got.startswith(b"421 ") and b"timeout" in got, got
    assert time.monotonic() - start < 3.0
    s.close()


def test_sigterm_drains_transaction_in_flight(pigeon_factory):
    server = pigeon_factory()
    s = connect(server.port)
    recv_reply(s)
    s.sendall(b"EHLO c\r\n")
    recv_reply(s)
    s.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<drain@localhost>\r\nDATA\r\n")
    assert b"354" in recv_reply(s) or b"354" in recv_reply(s)
    s.sendall(b"Subject: in flight\r\n\r\nfirst half\r\n")
    server.proc.send_signal(signal.SIGTERM)
    # The listening socket closes at once (docs/admin.md "Stop"): under
    # socket activation or `pigeon restart` another process takes newcomers.
    assert wait_for(lambda: refused(server.port), timeout=10)
    s.sendall(b"second half\r\n.\r\n")
    reply = recv_reply(s)
    assert b"250 2.0.0 Ok: queued as" in reply, reply
    if not reply.rstrip().split(b"\r\n")[-1].startswith(b"421"):
        s.sendall(b"NOOP\r\n")
        assert recv_reply(s).startswith(b"421 4.3.2")
    s.close()
    assert server.proc.wait(20) == 0
    # The message accepted during the drain is in the queue and gets
    # delivered (at the latest after a restart).
    server.start()
    assert wait_for(lambda: maildir_messages(server.data_dir, "drain@localhost"))
