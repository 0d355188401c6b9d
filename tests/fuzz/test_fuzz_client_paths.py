"""Property: every address pigeon's server accepts, pigeon's client writes in a
form the server reads back as the same address (proto/client.py Rule 6).

The address goes the way a relayed message's does: parsed by a ServerSession
from a MAIL/RCPT line, stored as `str(address)` (queue/model.py), handed to a
ClientSession in a Transaction, whose MAIL FROM / RCPT TO lines are fed to a
second ServerSession; both sessions must report the same Address.
"""

from __future__ import annotations

import os

from address_strategies import addresses
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pigeon.proto.client import ClientSession, Transaction, TransactionDone
from pigeon.proto.events import NEED_DATA, MailRequested, RcptRequested
from pigeon.proto.server import ServerSession, SessionConfig
from pigeon.vocab.address import Address, PathError, parse_path

EXAMPLES = int(os.environ.get("PIGEON_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def server_reads(lines: bytes) -> list[Address | None]:
    """The senders/recipients a ServerSession hands to the driver for `lines`."""
    session = ServerSession(SessionConfig(max_errors=100), now=0.0)
    session.start(0.0)
    session.receive_data(b"EHLO client.test\r\n" + lines, 0.0)
    found: list[Address | None] = []
    while (ev := session.next_event()) is not NEED_DATA:
        if isinstance(ev, MailRequested):
            found.append(ev.sender)
            session.respond(None)
        elif isinstance(ev, RcptRequested):
            found.append(ev.recipient)
            session.respond(None)
    return found


def client_writes(sender: str, recipient: str) -> tuple[bytes, TransactionDone | None]:
    """The MAIL/RCPT lines a ClientSession writes for one transaction (PIPELINING peer)."""
    client = ClientSession(helo_name="pigeon.test")
    client.receive_data(b"220 mx.test ESMTP\r\n")
    client.receive_data(b"250-mx.test\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n")
    client.data_to_send()
    while client.next_event() is not None:
        pass
    client.send_transaction(Transaction(sender=sender, recipients=(recipient,), size=10))
    out = client.data_to_send()
    done = client.next_event()
    return out.replace(b"DATA\r\n", b""), done if isinstance(done, TransactionDone) else None


def round_trip(address: Address) -> None:
    stored = str(address)  # what the queue keeps
    wire, refused = client_writes(stored, stored)
    assert refused is None, (stored, refused)  # accepted, so it is written
    assert server_reads(wire) == [address, address], (stored, wire)


@FUZZ
@given(addresses)
@example(Address("a>b", "example.test"))  # the production case
@example(Address('"<>\\ x', "example.test"))
@example(Address("user", "[IPv6:2001:db8::1]"))
def test_every_accepted_address_is_written_back_the_same(address):
    try:
        parsed = parse_path(f"<{address}>", allow_null=False, smtputf8=False)
    except PathError:
        return  # too long: the server never accepts it
    round_trip(parsed)


@FUZZ
@given(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80))
@example('"a>b"@example.test')
@example('"a\\"b"@example.test')
@example("@a.example,@b.example:u@c.example")
def test_any_text_the_server_accepts_round_trips(text):
    """Not generated from the grammar: whatever the server's RCPT parser takes."""
    found = server_reads(f"MAIL FROM:<>\r\nRCPT TO:<{text}>\r\n".encode())
    if len(found) == 2 and found[1] is not None:
        round_trip(found[1])
