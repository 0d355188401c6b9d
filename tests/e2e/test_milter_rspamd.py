"""rspamd (Debian's package) as a milter of pigeon, through its proxy in milter mode.

One private rspamd for the module (pigeon.testing.milters.rspamd: loopback
ports, DNS to a closed loopback port, no redis), a fresh pigeon per test:
  * a message rspamd scores as spam arrives with its verdict header fields
    (X-Spam: Yes, X-Spam-Status: Yes), a clean one with X-Spam-Status: No;
  * the GTUBE test pattern is rejected with rspamd's 554 5.7.1 at the end
    of the data, nothing is delivered and the mail log has the reject;
  * two milters in order (OpenDKIM, then rspamd): both act on one message.
"""

from __future__ import annotations

import smtplib

import pytest

from pigeon.testing.live import maildir_messages, require_tool, wait_for
from pigeon.testing.milters import opendkim, rspamd

pytestmark = pytest.mark.e2e

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
CLEAN = (
    "From: Alice <alice@example.test>\r\n"
    "To: Bob <bob@example.test>\r\n"
    "Date: Sun, 06 Dec 2026 04:00:00 +0000\r\n"
    "Message-ID: <clean-1@example.test>\r\n"
    "Subject: lunch\r\n"
    "\r\n"
    "Lunch at noon?\r\n"
)
# No To:, Date: or Message-ID: scores 5.5 with rspamd's stock rules (the
# private instance adds its header at 4).
SPAMMY = "From: alice@example.test\r\nSubject: buy now\r\n\r\nbuy\r\n"


@pytest.fixture(scope="module")
def scanner(tmp_path_factory):
    require_tool("rspamd")
    with rspamd(tmp_path_factory.mktemp("rspamd")) as daemon:
        yield daemon


def _server(pigeon_factory, *milters):
    entries = "".join(f'[[milters]]\nname = "{m.name}"\nsocket = "{m.socket}"\n' for m in milters)
    return pigeon_factory('[domains."example.test"]\nmailboxes = ["alice", "bob"]\n' + entries)


def _send(server, message):
    with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client:
        client.sendmail("alice@example.test", ["bob@example.test"], message)


def _delivered(server, count=1):
    found = wait_for(
        lambda: len(maildir_messages(server.data_dir, "bob@example.test")) >= count and True, 30
    )
    assert found, server.log()
    return [p.read_bytes() for p in maildir_messages(server.data_dir, "bob@example.test")]


def _head(message: bytes) -> bytes:
    return message.split(b"\n\n", 1)[0] + b"\n"  # the Maildir keeps lines with LF


def test_spam_verdict_header_added(scanner, pigeon_factory):
    server = _server(pigeon_factory, scanner)
    _send(server, SPAMMY)
    (spam,) = _delivered(server)
    head = _head(spam)
    assert b"\nX-Spam: Yes\n" in head, head
    assert b"\nX-Spam-Status: Yes, score=" in head
    assert b"\nX-Spamd-Result: default: " in head and b"MISSING_MID" in head


def test_clean_message_gets_a_no_verdict(scanner, pigeon_factory):
    server = _server(pigeon_factory, scanner)
    _send(server, CLEAN)
    (clean,) = _delivered(server)
    head = _head(clean)
    assert b"\nX-Spam-Status: No, score=" in head, head
    assert b"\nX-Spam: " not in head
    assert clean.endswith(b"\n\nLunch at noon?\n")


def test_gtube_rejected(scanner, pigeon_factory):
    server = _server(pigeon_factory, scanner)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        _send(server, CLEAN.replace("Lunch at noon?", GTUBE))
    assert refused.value.smtp_code == 554
    assert refused.value.smtp_error.startswith(b"5.7.1 ")
    # The session goes on: the next message of the same client is taken.
    _send(server, CLEAN)
    assert len(_delivered(server)) == 1
    # The mail log is written by a background thread: wait for the line.
    logged = wait_for(lambda: "reject: END-OF-MESSAGE" in server.log(), 10)
    assert logged and "554 5.7.1 Gtube pattern" in server.log(), server.log()


def test_two_milters_in_order(scanner, pigeon_factory, tmp_path):
    require_tool("opendkim")
    require_tool("opendkim-genkey")
    with opendkim(tmp_path / "opendkim", "example.test", "sel1") as signer:
        server = _server(pigeon_factory, signer, scanner)
        _send(server, CLEAN)
        (message,) = _delivered(server)
    head = _head(message)
    assert head.index(b"\nDKIM-Signature: ") < head.index(b"\nReceived: ")  # on top
    assert b"\nX-Spam-Status: No" in head
