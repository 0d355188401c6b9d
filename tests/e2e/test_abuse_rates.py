"""Rate limits on a live pigeon (issue 12, "Done when": a client over its rate
gets 421/450 while another client is unaffected; the limits hold across a restart).

Clients connect from distinct loopback addresses (127.0.0.0/8 is all ours),
so each is a client of its own; the network limits are off here because
they would count all of them together (127.0.0.0/24).
"""

from __future__ import annotations

import socket
import sqlite3

import pytest

from pigeon.testing.live import recv_reply, wait_for

pytestmark = pytest.mark.e2e

CONFIG = (
    '[domains."example.test"]\nmailboxes = ["alice"]\n'
    "[rate_limits]\nexceptions = []\ntime_unit = 3600\n"
    "client_connections = 3\nnetwork_connections = 0\n"
    "client_messages = 2\nnetwork_messages = 0\nsender_messages = 0\nuser_messages = 0\n"
)


class Client:
    def __init__(self, port: int, source: str) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=10, source_address=(source, 0)
        )
        self.greeting = recv_reply(self.sock)

    def cmd(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\r\n")
        return recv_reply(self.sock)

    def close(self) -> None:
        self.sock.close()


def _mail(port: int, source: str, times: int) -> list[bytes]:
    client = Client(port, source)
    assert client.greeting.startswith(b"220"), client.greeting
    client.cmd("EHLO client.example")
    replies = []
    for _ in range(times):
        replies.append(client.cmd("MAIL FROM:<someone@elsewhere.example>"))
        client.cmd("RSET")
    client.cmd("QUIT")
    client.close()
    return replies


def test_a_client_over_its_message_rate_gets_450_another_does_not(pigeon_factory):
    server = pigeon_factory(CONFIG)
    over = _mail(server.port, "127.0.0.2", 3)
    assert over[0].startswith(b"250") and over[1].startswith(b"250")
    assert over[2].startswith(b"450 4.7.1 ") and b"too much mail from [127.0.0.2]" in over[2]
    assert all(r.startswith(b"250") for r in _mail(server.port, "127.0.0.3", 2))


def test_a_client_over_its_connection_rate_gets_421_even_after_a_restart(pigeon_factory):
    server = pigeon_factory(CONFIG)
    for _ in range(3):
        client = Client(server.port, "127.0.0.4")
        assert client.greeting.startswith(b"220"), client.greeting
        client.cmd("QUIT")
        client.close()
    refused = Client(server.port, "127.0.0.4")
    # Before EHLO no enhanced code is sent (RFC 2034 §3: only once EHLO offered it).
    assert refused.greeting.startswith(b"421 pigeon.test Error: "), refused.greeting
    assert b"too many connections from [127.0.0.4]" in refused.greeting
    refused.close()
    other = Client(server.port, "127.0.0.5")
    assert other.greeting.startswith(b"220"), other.greeting
    other.close()
    # The buckets are on disk: a restart does not let the client off.
    server.stop()
    database = server.data_dir / "abuse.db"
    with sqlite3.connect(database) as db:
        keys = {k for (k,) in db.execute("SELECT key FROM state WHERE kind = 'bucket'")}
    assert "conn:127.0.0.4" in keys
    server.start()
    again = Client(server.port, "127.0.0.4")
    assert again.greeting.startswith(b"421 pigeon.test "), again.greeting
    again.close()
    assert wait_for(lambda: "too many connections from [127.0.0.4]" in server.log())
