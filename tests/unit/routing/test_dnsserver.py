"""The loopback DNS server used by the MX tests: answers, rcodes, UDP/TCP."""

from __future__ import annotations

import socket

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from pigeon.testing.dnsserver import DnsServer

ZONE = """
@       MX 10 mx
mx      A 127.0.0.2
alias   CNAME mx
a.b     A 127.0.0.3
"""


def ask(
    server: DnsServer, name: str, rdtype: str = "A", *, tcp: bool = False, timeout: float = 2.0
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, "127.0.0.1", port=server.port, timeout=timeout)


def test_answers_over_udp_and_tcp():
    with DnsServer(zones={"example.test": ZONE}) as server:
        for tcp in (False, True):
            reply = ask(server, "example.test", "MX", tcp=tcp)
            assert reply.rcode() == dns.rcode.NOERROR
            assert [r.to_text() for r in reply.answer[0]] == ["10 mx.example.test."]
        assert [q[2] for q in server.queries] == ["udp", "tcp"]


def test_rcodes_and_no_data():
    with DnsServer(zones={"example.test": ZONE}, servfail={"broken.test"}) as server:
        assert ask(server, "nope.example.test").rcode() == dns.rcode.NXDOMAIN
        assert ask(server, "elsewhere.test").rcode() == dns.rcode.NXDOMAIN
        assert ask(server, "x.broken.test").rcode() == dns.rcode.SERVFAIL
        no_data = ask(server, "mx.example.test", "AAAA")
        assert no_data.rcode() == dns.rcode.NOERROR and not no_data.answer
        empty_non_terminal = ask(server, "b.example.test")
        assert empty_non_terminal.rcode() == dns.rcode.NOERROR and not empty_non_terminal.answer


def test_cname_is_followed():
    with DnsServer(zones={"example.test": ZONE}) as server:
        reply = ask(server, "alias.example.test")
        assert [rrset.rdtype for rrset in reply.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]


def test_timeout_names_get_no_answer():
    with DnsServer(zones={"example.test": ZONE}, timeout={"slow.test"}) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(0.3)
        sock.sendto(dns.message.make_query("slow.test", "A").to_wire(), ("127.0.0.1", server.port))
        try:
            sock.recvfrom(512)
            answered = True
        except TimeoutError:
            answered = False
        finally:
            sock.close()
        assert not answered
        assert ("slow.test", "A", "udp") in server.queries


def test_large_udp_answers_are_truncated():
    zone = "".join(f'big TXT "{i:03d}{"x" * 200}"\n' for i in range(10))
    with DnsServer(zones={"example.test": zone}) as server:
        reply = ask(server, "big.example.test", "TXT")
        assert reply.flags & dns.flags.TC
        assert len(ask(server, "big.example.test", "TXT", tcp=True).answer[0]) == 10


def test_standalone_script(tmp_path):
    import subprocess
    import sys

    zone = tmp_path / "example.test.zone"
    zone.write_text(ZONE, encoding="utf-8")
    with DnsServer() as probe:  # find a port that is free for UDP and TCP
        port = probe.port
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pigeon.testing.dnsserver",
            "--zone",
            str(zone),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert f"port {port}" in proc.stdout.readline()
        reply = dns.query.udp(
            dns.message.make_query("mx.example.test", "A"), "127.0.0.1", port=port, timeout=2
        )
        assert reply.answer[0][0].to_text() == "127.0.0.2"
    finally:
        proc.terminate()
        proc.wait(timeout=5)
