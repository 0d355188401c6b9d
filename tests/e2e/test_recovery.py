"""Crash recovery: SIGKILL mid-stream, restart, nothing acknowledged is lost.

Promise 1: a 250 after DATA/BDAT means the message and its envelope are
fsync'ed. Several client threads send numbered messages; pigeon is killed
with SIGKILL while they are sending (one client is always parked in the
middle of a DATA phase), then restarted. Every message that got a 250 must
be in the Maildir after the restart, exactly as sent; the half-sent one must
not be there at all, nor any truncated message.
"""

from __future__ import annotations

import random
import re
import smtplib
import socket
import threading
import time

import pytest

from pigeon.testing.live import maildir_messages, recv_reply, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RCPT = "crash@localhost"
TOKEN = re.compile(rb"X-Token: (\S+)")


def body(token: str) -> bytes:
    filler = b"".join(b"line %d of %s\r\n" % (i, token.encode()) for i in range(200))
    return (
        f"Subject: {token}\r\nX-Token: {token}\r\n\r\n".encode()
        + filler
        + f"END-OF-MESSAGE {token}\r\n".encode()
    )


class Sender(threading.Thread):
    def __init__(self, port: int, name: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.prefix, self.stop = port, name, stop
        self.acked: set[str] = set()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set() and n < 2000:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as s:
                    s.ehlo("crash.example")
                    while not self.stop.is_set() and n < 2000:
                        n += 1
                        token = f"{self.prefix}-{n}"
                        s.sendmail("load@example.org", [RCPT], body(token))
                        self.acked.add(token)  # only after the 250
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)


def park_in_data(port: int, token: str) -> socket.socket:
    """Open a session and stop half-way through the message content."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    recv_reply(s)
    s.sendall(b"EHLO parked.example\r\n")
    recv_reply(s)
    s.sendall(f"MAIL FROM:<p@example.org>\r\nRCPT TO:<{RCPT}>\r\nDATA\r\n".encode())
    while b"354" not in recv_reply(s):
        pass
    s.sendall(body(token)[:3000])
    return s


def delivered_tokens(data_dir) -> dict[str, bytes]:
    out = {}
    for path in maildir_messages(data_dir, RCPT):
        content = path.read_bytes()
        match = TOKEN.search(content)
        assert match, f"message without token: {path}"
        out[match.group(1).decode()] = content
    return out


def test_sigkill_mid_stream_loses_nothing_acknowledged(pigeon_factory):
    rng = random.Random(5321)
    server = pigeon_factory()
    all_acked: set[str] = set()
    parked_tokens: list[str] = []
    for cycle in range(3):
        stop = threading.Event()
        senders = [Sender(server.port, f"c{cycle}s{i}", stop) for i in range(4)]
        for t in senders:
            t.start()
        time.sleep(0.3 + rng.random() * 0.7)
        parked_token = f"parked-{cycle}"
        parked = park_in_data(server.port, parked_token)
        parked_tokens.append(parked_token)
        time.sleep(rng.random() * 0.3)
        server.kill()
        stop.set()
        for t in senders:
            t.join(15)
            all_acked |= t.acked
        parked.close()
        server.start()
    assert len(all_acked) > 20, "the load did not get going"

    def complete():
        got = delivered_tokens(server.data_dir)
        return got if all_acked <= set(got) else None

    got = wait_for(complete, timeout=60) or delivered_tokens(server.data_dir)
    lost = all_acked - set(got)
    assert not lost, f"{len(lost)} acknowledged message(s) lost: {sorted(lost)[:10]}"
    for token, content in got.items():
        # Nothing half-delivered: every delivered message is complete.
        assert content.rstrip(b"\r\n").endswith(f"END-OF-MESSAGE {token}".encode()), token
    for token in parked_tokens:
        assert token not in got, "a message cut off mid-DATA was delivered"
