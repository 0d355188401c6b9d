"""OpenDKIM (Debian's package) as a milter of pigeon, in signing mode, end to end.

The test starts its own OpenDKIM on a Unix socket in its tmp directory
(pigeon.testing.milters), pigeon with `[[milters]]` pointing at it, submits
a message (as a logged-in user on the submission role, and over plain SMTP
from loopback), and checks the delivered message: its
DKIM-Signature verifies (dkimpy) against the public key served by a real
DNS server on loopback (pigeon.testing.dnsserver).
"""

from __future__ import annotations

import smtplib

import dkim
import dns.resolver
import pytest
from dns.nameserver import Do53Nameserver
from secure_helpers import PASSWORD, USER, add_user, insecure_context

from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.live import maildir_messages, require_tool, wait_for
from pigeon.testing.milters import opendkim

pytestmark = pytest.mark.e2e

MESSAGE = (
    "From: Alice <alice@example.test>\r\n"
    "To: bob@example.test\r\n"
    "Subject: signed by a milter\r\n"
    "X-Folded: first part\r\n"
    "\tsecond part\r\n"
    "\r\n"
    "Hello Bob,\r\n"
    "this message goes through OpenDKIM.\r\n"
)


def _dns_lookup(port: int):
    """dkimpy's dnsfunc, asking our loopback DNS server only."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [Do53Nameserver("127.0.0.1", port)]

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        answer = resolver.resolve(name.decode().rstrip("."), "TXT", lifetime=timeout)
        return b"".join(b"".join(r.strings) for r in answer)

    return lookup


@pytest.fixture
def signer(tmp_path):
    require_tool("opendkim")
    require_tool("opendkim-genkey")
    with opendkim(tmp_path / "opendkim", "example.test", "sel1") as daemon:
        yield daemon


@pytest.mark.parametrize("role", ["submission", "smtp"])
def test_mail_through_pigeon_arrives_signed_and_verifies(signer, pigeon_factory, role):
    server = pigeon_factory(
        '[domains."example.test"]\nmailboxes = ["alice", "bob"]\n'
        f'[[milters]]\nname = "opendkim"\nsocket = "{signer.socket}"\n'
    )
    if role == "submission":  # a user submits: STARTTLS and AUTH on port 587's role
        add_user(server, USER, PASSWORD)
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as client:
            client.starttls(context=insecure_context())
            client.login(USER, PASSWORD)
            client.sendmail(USER, ["bob@example.test"], MESSAGE)
    else:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
            client.sendmail("alice@example.test", ["bob@example.test"], MESSAGE)
    found = wait_for(lambda: maildir_messages(server.data_dir, "bob@example.test"), 30)
    assert found, server.log()
    delivered = found[0].read_bytes()
    head = delivered.split(b"\n\n", 1)[0]  # the Maildir keeps lines with LF
    assert b"\nDKIM-Signature: " in head
    assert b"d=example.test" in head and b"s=sel1" in head
    zone = f'sel1._domainkey TXT "{signer.dns_txt}"\n'
    with DnsServer(zones={"example.test": zone}) as dns_server:
        assert dkim.verify(delivered, dnsfunc=_dns_lookup(dns_server.port))
        # And the signature covers the content: a changed body fails.
        tampered = delivered.replace(b"Hello Bob", b"Hello Eve")
        assert not dkim.verify(tampered, dnsfunc=_dns_lookup(dns_server.port))
