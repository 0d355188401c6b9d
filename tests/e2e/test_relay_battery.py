"""Open relay battery (issue 6, part 4): the classic relay tricks, unauthenticated,
from a client outside `relay_networks`. 0 relayed.

The world: pigeon with the catch-all local domain `example.test` (any local
part is accepted) and `relay_networks = ["127.0.0.2/32"]`; a DNS server on
loopback says `other.org MX 10 mx.other.org` -> 127.0.0.3, where smtp-sink
listens and counts what reaches it; another smtp-sink on 127.0.0.4 catches
mail for the address literal `[127.0.0.4]`.

Every trick is sent from 127.0.0.1 (not a relay client). Each row names
what must happen:
  * "refused": RCPT gets a 5xx (nothing is queued);
  * "local": the address's domain part is ours, so it is accepted and the
    message lands in a Maildir under example.test, NOT at the sink
    (Postfix's `allow_percent_hack` / `swap_bangpath` / source routes never
    turn it into relaying).
At the end, a control message from 127.0.0.2 (inside relay_networks) is
relayed to the sink, proving the sink would have seen a relayed message; the
sinks must hold that one message and nothing else.
"""

from __future__ import annotations

import socket
import sqlite3

import pytest

from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.live import free_port, recv_reply, wait_for
from pigeon.testing.sink import SmtpSink

pytestmark = pytest.mark.e2e

OURS = "example.test"
CYRILLIC_O = "\u043e"  # looks like Latin "o"
CYRILLIC_A = "\u0430"  # looks like Latin "a"

# (name, forward-path as sent, SMTPUTF8?, expected outcome)
BATTERY = [
    ("plain relay", "<user@other.org>", False, "refused"),
    ("percent hack", f"<user%other.org@{OURS}>", False, "local"),
    ("percent hack, two hops", f"<user%other.org%other.net@{OURS}>", False, "local"),
    ("bang path", f"<other.org!user@{OURS}>", False, "local"),
    ("bang path, no domain", "<other.org!user>", False, "refused"),
    ("source route via us", f"<@{OURS}:user@other.org>", False, "refused"),
    ("source route, two hops", f"<@{OURS},@mx.{OURS}:user@other.org>", False, "refused"),
    ("source route to us", f"<@other.org:user@{OURS}>", False, "local"),
    ("quoted @ in local part", f'<"user@other.org"@{OURS}>', False, "local"),
    ("quoted percent and bang", f'<"user%other.org!x"@{OURS}>', False, "local"),
    ("double @", f"<user@other.org@{OURS}>", False, "refused"),
    ("double @, reversed", f"<user@{OURS}@other.org>", False, "refused"),
    ("address literal, sink", "<user@[127.0.0.4]>", False, "refused"),
    ("address literal, loopback", "<user@[127.0.0.1]>", False, "refused"),
    ("address literal, IPv6", "<user@[IPv6:::1]>", False, "refused"),
    (
        "percent hack to a literal",
        f"<user%[127.0.0.4]@{OURS}>",
        False,
        "refused",
    ),  # "[" is not atext
    ("trailing dot, ours", f"<user@{OURS}.>", False, "refused"),
    ("trailing dot, other", "<user@other.org.>", False, "refused"),
    ("mixed case other", "<USER@OTHER.ORG>", False, "refused"),
    ("mixed case ours", "<User@Example.TEST>", False, "local"),
    ("subdomain of ours", f"<user@mx.{OURS}>", False, "refused"),
    ("ours as a prefix", f"<user@{OURS}.other.org>", False, "refused"),
    ("cyrillic look-alike of ours", f"<user@ex{CYRILLIC_A}mple.test>", True, "refused"),
    ("cyrillic look-alike of other", f"<user@{CYRILLIC_O}ther.org>", True, "refused"),
    ("cyrillic look-alike, no SMTPUTF8", f"<user@ex{CYRILLIC_A}mple.test>", False, "refused"),
    ("punycode look-alike", "<user@xn--exmple-4nf.test>", False, "refused"),
    ("space before >", "<user@other.org >", False, "refused"),
    ("space after <", "< user@other.org>", False, "refused"),
    ("no brackets", "user@other.org", False, "refused"),
    ("two paths", f"<user@{OURS}> <user@other.org>", False, "refused"),
    ("unbalanced bracket", f"<user@other.org <user@{OURS}>", False, "refused"),
    ("postmaster elsewhere", "<postmaster@other.org>", False, "refused"),
    ("bare postmaster", "<postmaster>", False, "local"),
    ("path traversal local part", f'<"../../../etc/x"@{OURS}>', False, "local"),
    ("ipv4 domain without brackets", "<user@127.0.0.4>", False, "refused"),
    ("backslash escape", f'<"user\\@other.org"@{OURS}>', False, "local"),
    ("comment-like", f"<user@other.org(@{OURS})>", False, "refused"),
]


def _send_one(
    port: int,
    rcpt: str,
    smtputf8: bool,
    token: str,
    *,
    source: str = "127.0.0.1",
    sender: str = "attacker@evil.example",
) -> str:
    """One transaction; returns the RCPT reply (and sends DATA when it was 250)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    try:
        recv_reply(s)
        s.sendall(b"EHLO evil.example\r\n")
        recv_reply(s)
        param = " SMTPUTF8" if smtputf8 else ""
        s.sendall(f"MAIL FROM:<{sender}>{param}\r\n".encode())
        assert recv_reply(s).startswith(b"250")
        s.sendall(f"RCPT TO:{rcpt}\r\n".encode())
        reply = recv_reply(s).decode("utf-8", "replace")
        if reply.startswith("250"):
            s.sendall(b"DATA\r\n")
            assert recv_reply(s).startswith(b"354")
            s.sendall(f"Subject: {token}\r\nX-Battery: {token}\r\n\r\nrelay test\r\n.\r\n".encode())
            assert recv_reply(s).startswith(b"250")
        s.sendall(b"QUIT\r\n")
        return reply
    finally:
        s.close()


@pytest.fixture
def world(tmp_path, pigeon_factory):
    port = free_port()
    zones = {
        "other.org": "@ MX 10 mx\nmx A 127.0.0.3\n",
        "other.net": "@ MX 10 mx\nmx A 127.0.0.3\n",
    }
    with (
        DnsServer(zones=zones) as dns,
        SmtpSink("127.0.0.3", port) as mx,
        SmtpSink("127.0.0.4", port) as literal,
    ):
        server = pigeon_factory(f"""relay_networks = ["127.0.0.2/32"]
[domains."{OURS}"]
[delivery]
dns_servers = ["127.0.0.1:{dns.port}"]
remote_port = {port}
connect_timeout = 2.0
tls = "none"
[queue]
run_interval = 0.5
min_backoff = 0.5
max_backoff = 1.0
[admin]
metrics_listen = ""
""")
        yield server, mx, literal


def _local_deliveries(server) -> dict[str, str]:
    """token -> mailbox directory, for every message in a Maildir of ours."""
    out = {}
    for path in (server.data_dir / "mailboxes").glob("*/*/new/*"):
        for line in path.read_bytes().splitlines():
            if line.startswith(b"X-Battery: "):
                out[line[11:].decode()] = (
                    f"{path.parent.parent.name}@{path.parent.parent.parent.name}"
                )
    return out


def test_open_relay_battery_relays_nothing(world):
    server, mx, literal = world
    results = []
    for i, (name, rcpt, utf8, expected) in enumerate(BATTERY):
        token = f"trick-{i}"
        reply = _send_one(server.port, rcpt, utf8, token)
        results.append((name, rcpt, expected, reply.strip(), token))
        # A local sender does not buy relaying either.
        if expected == "refused":
            again = _send_one(
                server.port, rcpt, utf8, token + "-local-sender", sender=f"boss@{OURS}"
            )
            assert not again.startswith("2"), (name, "local sender", again)

    wrong = [
        (n, r, e, rep) for n, r, e, rep, _ in results if (e == "refused") != (rep[:1] in ("4", "5"))
    ]
    assert not wrong, "\n".join(
        f"{n}: RCPT TO:{r} expected {e}, got {rep}" for n, r, e, rep in wrong
    )
    for name, _rcpt, expected, reply, _ in results:
        if expected == "refused":
            assert reply[:1] == "5", (name, reply)  # a definite no, not "try later"

    # The control: a relay client's message does reach the sink.
    assert _send_one(
        server.port, "<control@other.org>", False, "control", source="127.0.0.2"
    ).startswith("250")
    assert wait_for(mx.messages, timeout=30), "control message not relayed:\n" + server.log()

    local_tokens = {tok for _, _, e, _, tok in results if e == "local"}

    def settled():
        rows = (
            sqlite3.connect(server.data_dir / "queue" / "queue.db")
            .execute("SELECT COUNT(*) FROM queue")
            .fetchone()[0]
        )
        return rows == 0 and local_tokens <= set(_local_deliveries(server))

    assert wait_for(settled, timeout=30), server.log()
    delivered = _local_deliveries(server)
    for name, _rcpt, expected, _reply, token in results:
        if expected == "local":
            assert delivered[token].endswith(f"@{OURS}"), (name, delivered[token])
    relayed = [m for m in mx.messages() + literal.messages() if b"X-Battery: trick" in m]
    assert len(mx.messages()) == 1 and b"X-Battery: control" in mx.messages()[0]
    assert not relayed, f"{len(relayed)} message(s) relayed"
    # Nothing sneaked out by bouncing either: the attacker's domain is not ours.
    print(
        f"\nrelay battery: {len(BATTERY)} tricks, "
        f"{sum(r[2] == 'refused' for r in results)} refused, "
        f"{len(local_tokens)} delivered locally, 0 relayed"
    )
    for name, rcpt, _expected, reply, token in results:
        where = delivered.get(token, "-")
        print(f"  {name:34} {rcpt:45} {reply.splitlines()[-1][:40]:40} {where}")
