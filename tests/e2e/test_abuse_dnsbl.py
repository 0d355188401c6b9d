"""DNSBL and RHSBL on a live pigeon, against a real DNS server on loopback
(pigeon.testing.dnsserver): weights add up to the threshold; a client that
is not listed is unaffected."""

from __future__ import annotations

import socket

import pytest

from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.live import recv_reply

pytestmark = pytest.mark.e2e

ZONES = {
    "bl.test": "6.0.0.127 A 127.0.0.2\n8.0.0.127 A 127.0.0.2\n",
    "weak.test": "6.0.0.127 A 127.0.0.4\n",
    "dbl.test": "spam.example A 127.0.1.2\n",
}


def _session(port: int, source: str, sender: str) -> tuple[bytes, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        assert recv_reply(s).startswith(b"220")
        s.sendall(b"EHLO client.example\r\n")
        recv_reply(s)
        s.sendall(f"MAIL FROM:<{sender}>\r\n".encode())
        mail = recv_reply(s)
        s.sendall(b"RCPT TO:<alice@example.test>\r\n")
        rcpt = recv_reply(s)
        s.sendall(b"QUIT\r\n")
        recv_reply(s)
    return mail, rcpt


def test_listed_clients_and_senders_are_refused_by_weight(pigeon_factory):
    with DnsServer(zones=ZONES) as dns:
        server = pigeon_factory(
            '[domains."example.test"]\nmailboxes = ["alice"]\n'
            f'[delivery]\ndns_servers = ["127.0.0.1:{dns.port}"]\n'
            "[dnsbl]\nthreshold = 3\n"
            'sites = ["bl.test=127.0.0.[2..11]*2", "weak.test*1"]\n'
            'rhsbl_sites = ["dbl.test=127.0.1.2*3"]\n'
        )
        # 127.0.0.6: bl.test (2) + weak.test (1) = 3: refused.
        mail, _ = _session(server.port, "127.0.0.6", "joe@good.example")
        assert mail.startswith(b"550 5.7.1 "), mail
        assert b"client [127.0.0.6] blocked using bl.test, weak.test" in mail
        # 127.0.0.8: bl.test only (2 < 3): accepted.
        mail, rcpt = _session(server.port, "127.0.0.8", "joe@good.example")
        assert mail.startswith(b"250") and rcpt.startswith(b"250"), (mail, rcpt)
        # A sender domain on the RHSBL (3) is refused from any client.
        mail, _ = _session(server.port, "127.0.0.9", "joe@spam.example")
        assert mail.startswith(b"550 5.7.1 ") and b"dbl.test" in mail, mail
        asked = {name for name, _, _ in dns.queries}
        assert "6.0.0.127.bl.test" in asked and "spam.example.dbl.test" in asked
