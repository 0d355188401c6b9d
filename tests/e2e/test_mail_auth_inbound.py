"""The inbound checks on a live pigeon ([mail_auth], policy/mailauth), against a
real DNS server on loopback: a forged message from a p=reject domain is refused
at end of data with 550 5.7.1 (issue 13, "Done when"); a p=quarantine failure
lands in the recipient's .Junk folder; genuine mail carries our
Authentication-Results. The client connects from 127.0.0.2, outside
relay_networks (our own senders are not checked)."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.live import checker_pids, maildir_messages, recv_reply, wait_for
from pigeon.testing.mailauthkit import DkimKey, message, txt

pytestmark = pytest.mark.e2e

CLIENT = "127.0.0.2"


def _zones(key: DkimKey) -> dict[str, str]:
    return {
        "example.org": (
            f"@ TXT {txt(f'v=spf1 ip4:{CLIENT} -all')}\n"
            f"_dmarc TXT {txt('v=DMARC1; p=reject; rua=mailto:dmarc@example.org')}\n"
            + key.zone_line("example.org")
        ),
        "quarantine.example": f"_dmarc TXT {txt('v=DMARC1; p=quarantine')}\n",
        "forger.example": f"@ TXT {txt('v=spf1 -all')}\n",
    }


def _send(port: int, sender: str, content: bytes) -> bytes:
    """One transaction from 127.0.0.2; the reply to the end of data."""
    with socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(CLIENT, 0)) as s:
        assert recv_reply(s).startswith(b"220")
        s.sendall(b"EHLO client.forger.example\r\n")
        recv_reply(s)
        s.sendall(f"MAIL FROM:<{sender}>\r\n".encode())
        assert recv_reply(s).startswith(b"250")
        s.sendall(b"RCPT TO:<alice@example.test>\r\n")
        assert recv_reply(s).startswith(b"250")
        s.sendall(b"DATA\r\n")
        assert recv_reply(s).startswith(b"354")
        s.sendall(content + b".\r\n")
        done = recv_reply(s, timeout=20)
        s.sendall(b"QUIT\r\n")
        recv_reply(s)
    return done


@pytest.fixture
def server(pigeon_factory):
    key = DkimKey.rsa("s1", "example.org")
    with DnsServer(zones=_zones(key)) as dns:
        proc = pigeon_factory(
            'relay_networks = ["127.0.0.1/32"]\n'
            '[domains."example.test"]\nmailboxes = ["alice"]\n'
            f'[delivery]\ndns_servers = ["127.0.0.1:{dns.port}"]\ndns_timeout = 3\n'
        )
        yield proc, key, dns


def test_forged_mail_from_a_p_reject_domain_is_refused_at_end_of_data(server):
    proc, _, _ = server
    forged = message(sender="ceo@example.org", to="alice@example.test")
    reply = _send(proc.port, "bounce@forger.example", forged)
    assert reply.startswith(b"550 5.7.1 "), reply
    assert b"example.org publishes a DMARC policy of reject" in reply
    assert maildir_messages(proc.data_dir, "alice@example.test") == []


def test_genuine_mail_is_delivered_with_our_authentication_results(server):
    proc, key, _ = server
    signed = key.sign(message(sender="bob@example.org", to="alice@example.test"))
    reply = _send(proc.port, "bob@example.org", signed)
    assert reply.startswith(b"250"), reply
    (path,) = wait_for(lambda: maildir_messages(proc.data_dir, "alice@example.test"))
    head = path.read_bytes().split(b"\n\n", 1)[0].decode()
    assert head.count("Authentication-Results: pigeon.test;") == 1
    assert "spf=pass" in head and "dkim=pass" in head and "dmarc=pass" in head


def test_a_p_quarantine_failure_is_delivered_into_the_junk_folder(server):
    proc, _, _ = server
    mail = message(sender="news@quarantine.example", to="alice@example.test")
    reply = _send(proc.port, "news@quarantine.example", mail)
    assert reply.startswith(b"250"), reply
    junk = Path(proc.data_dir) / "mailboxes" / "example.test" / "alice" / ".Junk" / "new"
    (path,) = wait_for(lambda: sorted(junk.iterdir()) if junk.is_dir() else [])
    assert b"X-Pigeon-Quarantine: DMARC policy of quarantine.example" in path.read_bytes()
    assert maildir_messages(proc.data_dir, "alice@example.test") == []


def test_a_dns_server_that_stops_answering_gives_451_not_a_pass(server):
    proc, _, dns = server
    dns.close()  # pigeon's name server is gone
    mail = message(sender="news@quarantine.example", to="alice@example.test")
    reply = _send(proc.port, "news@quarantine.example", mail)
    assert reply.startswith(b"451 4.7.1 "), reply
    assert b"try again later" in reply
    assert maildir_messages(proc.data_dir, "alice@example.test") == []


#: A message this big is checked in the checker process ([mail_auth] checker_above).
BIG = "".join(
    f"line {i:05d} of a message big enough for the checker process\r\n" for i in range(700)
)


def test_the_checks_run_in_a_checker_process_and_survive_its_death(server):
    """[mail_auth] checker = "process" (the default): big messages are checked in
    a child process; killed, it is replaced (logged) and no message goes
    unchecked (tests/unit/policy/mailauth/test_remote.py: inline meanwhile)."""
    proc, key, _ = server
    firsts = checker_pids(proc.pid)
    assert len(firsts) == 1, firsts  # [mail_auth] checkers = 1 (policy/mailauth/pool.py)
    signed = key.sign(message(sender="bob@example.org", to="alice@example.test", body=BIG))
    assert len(signed) > 32768
    assert _send(proc.port, "bob@example.org", signed).startswith(b"250")
    for first in firsts:
        os.kill(first, signal.SIGKILL)
    forged = message(sender="ceo@example.org", to="alice@example.test", body=BIG)
    assert _send(proc.port, "bounce@forger.example", forged).startswith(b"550 5.7.1 ")
    assert wait_for(lambda: "the checker process ended" in proc.log())
    signed = key.sign(message(sender="carol@example.org", to="alice@example.test", body=BIG))
    assert _send(proc.port, "carol@example.org", signed).startswith(b"250")
    paths = wait_for(lambda: maildir_messages(proc.data_dir, "alice@example.test"))
    for path in paths:
        assert b"dkim=pass" in path.read_bytes()
    assert [p for p in checker_pids(proc.pid) if p not in firsts]
