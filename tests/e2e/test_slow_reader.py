"""A client that sends commands but never reads the replies loses its slot.

The write side has the same deadline as the read side (`timeouts.command`,
like Postfix's smtpd_timeout): once pigeon's replies stay unread that long
the connection is aborted and its slot (here the only one allowed per
address) is free again. Before, waiting for the socket to drain had no
deadline, and a few such clients per address held every slot forever.
"""

from __future__ import annotations

import socket
import time

import pytest

from pigeon.testing.live import recv_reply, wait_for

pytestmark = pytest.mark.e2e

TIMEOUT = 2
CONFIG = (
    f'[domains."example.test"]\n[timeouts]\ncommand = {TIMEOUT}\n[limits]\nconnections_per_ip = 1\n'
)


def _flood_without_reading(sock: socket.socket, seconds_blocked: float = 1.0) -> int:
    """Send EHLOs (each answered by ~200 octets) until the socket stays full."""
    sock.setblocking(False)
    sent, blocked_since = 0, None
    chunk = b"EHLO client.test\r\n" * 512
    for _ in range(100_000):  # bounded: well over what fills both buffers
        try:
            sent += sock.send(chunk)
            blocked_since = None
        except BlockingIOError:
            blocked_since = blocked_since or time.monotonic()
            if time.monotonic() - blocked_since > seconds_blocked:
                return sent
            time.sleep(0.01)
    return sent


def _greeting(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as probe:
        return recv_reply(probe)


def _connect_hog(port: int) -> socket.socket | None:
    hog = socket.socket()
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
    hog.connect(("127.0.0.1", port))
    if recv_reply(hog).startswith(b"220"):
        return hog
    hog.close()  # the start-up probe's slot was not released yet
    return None


def test_a_client_that_never_reads_is_closed_and_its_slot_freed(pigeon_factory):
    proc = pigeon_factory(CONFIG)
    hog = wait_for(lambda: _connect_hog(proc.port))
    assert hog is not None
    try:
        sent = _flood_without_reading(hog)
        assert sent > 100_000
        # While the hog holds the only slot for this address, others are refused.
        assert _greeting(proc.port).startswith(b"421 4.7.0")
        # Within the write timeout (plus scheduling slack) the slot is free.
        assert wait_for(lambda: _greeting(proc.port).startswith(b"220"), timeout=TIMEOUT + 20)
        assert wait_for(lambda: "does not read its replies" in proc.log())
    finally:
        hog.close()
