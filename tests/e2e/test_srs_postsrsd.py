"""Our SRS addresses are libsrs2's: postsrsd (Debian's, built on libsrs2's
scheme) run on loopback with the same secret and domain makes the same
SRS0/SRS1 addresses as `forwarding.srs.SrsCodec`, and each side reverses
the other's.

postsrsd answers Postfix's tcp_table protocol: "get ADDRESS\\n" -> "200
RESULT\\n" (or 500 when it does not rewrite), values %-encoded.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.parse

import pytest

from pigeon.forwarding.srs import SrsCodec
from pigeon.testing.live import free_port, require_tool, wait_for

pytestmark = pytest.mark.e2e

DOMAIN = "fwd.test"
SECRET = b"a shared secret for both"


@pytest.fixture
def postsrsd(tmp_path):
    binary = require_tool("postsrsd")
    secret = tmp_path / "postsrsd.secret"
    secret.write_bytes(SECRET + b"\n")
    forward, reverse = free_port(), free_port()
    proc = subprocess.Popen(
        [binary, f"-s{secret}", f"-d{DOMAIN}", "-l127.0.0.1", f"-f{forward}", f"-r{reverse}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", reverse), timeout=1).close()
            return True
        except OSError:
            return proc.poll() is not None  # stop waiting: it died

    try:
        assert wait_for(listening, timeout=10) and proc.poll() is None, proc.stderr
        yield forward, reverse
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def ask(port: int, address: str) -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"get {urllib.parse.quote(address, safe='@=+-.')}\n".encode())
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            assert chunk, "postsrsd closed the connection"
            reply += chunk
    code, _, text = reply.decode().strip().partition(" ")
    return int(code), urllib.parse.unquote(text)


def test_same_srs0_and_each_reverses_the_other(postsrsd):
    forward, reverse = postsrsd
    ours = SrsCodec([SECRET], DOMAIN)
    code, theirs = ask(forward, "Alice@Origin.example")
    assert code == 200, theirs
    made = ours.forward("Alice@Origin.example", time.time())
    if made != theirs:  # made across midnight UTC: one more try on the same day
        code, theirs = ask(forward, "Alice@Origin.example")
        made = ours.forward("Alice@Origin.example", time.time())
    assert made == theirs
    assert ours.reverse(theirs, time.time()) == "Alice@Origin.example"
    assert ask(reverse, made) == (200, "Alice@Origin.example")
    # Case changed on the way: both still reverse it.
    assert ask(reverse, made.lower())[0] == 200
    assert ours.reverse(theirs.upper(), time.time()).lower() == "alice@origin.example"


def test_same_srs1_and_each_reverses_the_other(postsrsd):
    forward, reverse = postsrsd
    ours = SrsCodec([SECRET], DOMAIN)
    first = SrsCodec([b"first forwarder"], "first.example").forward("bob@o.example", time.time())
    code, theirs = ask(forward, first)
    assert code == 200, theirs
    assert theirs.startswith("SRS1=")
    assert ours.forward(first, time.time()) == theirs
    assert ours.reverse(theirs, None) == first
    assert ask(reverse, theirs) == (200, first)


def test_forged_hash_is_refused_by_both(postsrsd):
    _, reverse = postsrsd
    made = SrsCodec([SECRET], DOMAIN).forward("alice@origin.example", time.time())
    forged = made.replace("=alice@", "=mallory@")
    assert ask(reverse, forged)[0] == 500
    assert ask(reverse, made)[0] == 200
