"""Delivery to a DANE domain, end to end: pigeon sends through its real resolver to
Debian's unbound, which validates example.test (signed by ldns-signzone); the MX is a
second pigeon whose STARTTLS certificate does or does not match the domain's TLSA record
(made by ldns-dane). RFC 7672: a match delivers, authenticated; a mismatch defers."""

from __future__ import annotations

import email
import email.policy
import smtplib

import pytest
from dane_helpers import CA, LEAF, OTHER_CA, STRANGER, tlsa_by_ldns_dane

from pigeon.testing.certs import Issued
from pigeon.testing.dnssec import ValidatingResolver
from pigeon.testing.live import maildir_messages, require_tool, wait_for

pytestmark = pytest.mark.e2e


def receiver(pigeon_factory, tmp_path, cert: Issued, chain: Issued):
    """The MX: a pigeon on 127.0.0.2 (127.0.0.1 is the sender's own address: a loop)."""
    cert_path, key_path = cert.write(tmp_path, "mx", chain=[chain])
    return pigeon_factory(
        '[domains."example.test"]\nmailboxes = ["alice"]\n'
        f'[tls]\ncert_file = "{cert_path}"\nkey_file = "{key_path}"\n',
        host="127.0.0.2",
        hostname="mx.example.test",
    )


def sender(pigeon_factory, dns_port: int, mx_port: int, max_lifetime: float):
    return pigeon_factory(
        f"""relay_networks = ["127.0.0.0/8"]
[domains."localhost"]
[delivery]
dns_servers = ["127.0.0.1:{dns_port}"]
remote_port = {mx_port}
[tls_policy]
dane = true
mta_sts = false
[queue]
run_interval = 1.0
min_backoff = 1.0
max_backoff = 2.0
max_lifetime = {max_lifetime}
"""
    )


@pytest.fixture
def dane_world(tmp_path, pigeon_factory):
    """Starts the MX with `cert`, the DANE zone naming LEAF (DANE-EE, `3 1 1`), the sender."""
    for tool in ("unbound", "ldns-keygen", "ldns-signzone"):
        require_tool(tool)
    resolvers: list[ValidatingResolver] = []

    def start(cert: Issued, chain: Issued, *, bogus: bool = False, max_lifetime=3600.0):
        mx = receiver(pigeon_factory, tmp_path, cert, chain)
        tlsa = tlsa_by_ldns_dane(tmp_path, "mx.example.test", LEAF, "3 1 1")
        tlsa = tlsa.replace("_25._tcp.", f"_{mx.port}._tcp.")  # the port pigeon connects to
        zone = {"example.test": f"@ MX 10 mx\nmx A 127.0.0.2\n{tlsa}\n"}
        if bogus:  # the TLSA records' signatures spoilt: unbound answers SERVFAIL
            tlsa_name = f"_{mx.port}._tcp.mx.example.test"
            resolver = ValidatingResolver(bogus=zone, bogus_names={tlsa_name})
        else:
            resolver = ValidatingResolver(signed=zone)
        resolvers.append(resolver)
        resolver.start()
        return sender(pigeon_factory, resolver.port, mx.port, max_lifetime), mx

    yield start
    for resolver in resolvers:
        resolver.close()


def send(server, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.sendmail(
            "sender@localhost",
            ["alice@example.test"],
            f"From: sender@localhost\r\nSubject: {subject}\r\n\r\nbody\r\n",
        )


def test_matching_certificate_delivers_authenticated(dane_world):
    server, mx = dane_world(LEAF, CA)
    send(server, "dane match")
    assert wait_for(lambda: maildir_messages(mx.data_dir, "alice@example.test"), timeout=30)
    line = wait_for(
        lambda: next((x for x in server.log().splitlines() if "status=sent" in x), None),
        timeout=10,
    )
    assert line and "tls=verified" in line and "policy=dane" in line, server.log()


def test_other_certificate_is_deferred_not_sent(dane_world):
    server, mx = dane_world(STRANGER, OTHER_CA)
    send(server, "dane mismatch")
    line = wait_for(
        lambda: next((x for x in server.log().splitlines() if "status=deferred" in x), None),
        timeout=30,
    )
    assert line and "DANE" in line and "policy=dane" in line, server.log()
    assert "4.7." in line
    assert not maildir_messages(mx.data_dir, "alice@example.test")


def test_bogus_tlsa_records_defer(dane_world):
    server, mx = dane_world(LEAF, CA, bogus=True)
    send(server, "dane bogus")
    line = wait_for(
        lambda: next((x for x in server.log().splitlines() if "status=deferred" in x), None),
        timeout=30,
    )
    assert line and "TLSA look-up for mx.example.test failed" in line, server.log()
    assert not maildir_messages(mx.data_dir, "alice@example.test")


def test_expired_mail_for_a_dane_domain_bounces_with_the_reason(dane_world):
    server, mx = dane_world(STRANGER, OTHER_CA, max_lifetime=3.0)
    send(server, "dane expires")

    def bounces():
        return maildir_messages(server.data_dir, "sender@localhost")

    assert wait_for(bounces, timeout=40), server.log()
    report = email.message_from_bytes(bounces()[0].read_bytes(), policy=email.policy.default)
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    assert "Action: failed" in str(status) and "TLS required for example.test (DANE)" in str(status)
    assert not maildir_messages(mx.data_dir, "alice@example.test")
