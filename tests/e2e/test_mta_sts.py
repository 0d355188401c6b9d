"""MTA-STS end to end (RFC 8461): a real DNS server, a real HTTPS policy host, real
receiving servers (pigeon with STARTTLS) with a good and a bad certificate.

  enforce-good.test  policy enforce, MX mx.good.test  -> peer "good" (certificate from our CA)
  enforce-bad.test   policy enforce, MX mx.bad.test   -> peer "bad"  (self-signed certificate)
  testing-bad.test   policy testing, MX mx.bad.test   -> peer "bad"
  mismatch.test      policy enforce with mx: mx.elsewhere.test, MX mx.good.test (§4.1)

The policy host mta-sts.<domain> of every domain is 127.0.13.1:443, an HTTPS
server whose certificate our test CA signed; the sending pigeon trusts that CA
(`[tls_policy] ca_file`). The peers listen on 127.0.13.2 and 127.0.13.3 (not
127.0.0.1, which the sender listens on: an MX there would be "us").
"""

from __future__ import annotations

import email
import email.policy
import smtplib

import pytest
from secure_helpers import https_on_443

from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.httpsserver import Answer
from pigeon.testing.live import free_port, maildir_messages, wait_for
from pigeon.testing.testca import TestCa, self_signed

pytestmark = pytest.mark.e2e

WEB, GOOD, BAD = "127.0.13.1", "127.0.13.2", "127.0.13.3"
POLICY = "version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n"
DOMAINS = {
    # domain: (mode, mx: pattern, MX host)
    "enforce-good.test": ("enforce", "mx.good.test", "mx.good.test"),
    "enforce-bad.test": ("enforce", "*.bad.test", "mx.bad.test"),
    "testing-bad.test": ("testing", "mx.bad.test", "mx.bad.test"),
    "mismatch.test": ("enforce", "mx.elsewhere.test", "mx.good.test"),
}


def zones() -> dict[str, str]:
    out = {
        "good.test": f"mx A {GOOD}\n",
        "bad.test": f"mx A {BAD}\n",
    }
    for domain, (_mode, _mx, host) in DOMAINS.items():
        out[domain] = f'@ MX 10 {host}.\n_mta-sts TXT "v=STSv1; id=1;"\nmta-sts A {WEB}\n'
    return out


def peer_config(cert, key, domains) -> str:
    listed = "".join(f'[domains."{d}"]\n' for d in domains)
    return f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n{listed}'


@pytest.fixture
def world(tmp_path, pigeon_factory):
    ca = TestCa(tmp_path / "ca")
    web_cert, web_key = ca.issue(*(f"mta-sts.{d}" for d in DOMAINS))
    answers = {
        f"mta-sts.{d}": Answer(POLICY.format(mode=mode, mx=mx).encode())
        for d, (mode, mx, _host) in DOMAINS.items()
    }
    web = https_on_443(WEB, web_cert, web_key, answers)
    with web, DnsServer(zones=zones()) as dns:
        port = free_port()
        good_cert, good_key = ca.issue("mx.good.test")
        bad_cert, bad_key = self_signed(tmp_path / "bad", "mx.bad.test")
        good = pigeon_factory(
            peer_config(good_cert, good_key, ["enforce-good.test", "mismatch.test"]),
            host=GOOD,
            port=port,
            hostname="mx.good.test",
        )
        bad = pigeon_factory(
            peer_config(bad_cert, bad_key, ["enforce-bad.test", "testing-bad.test"]),
            host=BAD,
            port=port,
            hostname="mx.bad.test",
        )

        def sender(max_lifetime: float = 3600.0):
            return pigeon_factory(
                f"""relay_networks = ["127.0.0.0/8"]
[domains."localhost"]
[delivery]
dns_servers = ["127.0.0.1:{dns.port}"]
remote_port = {port}
connect_timeout = 5.0
[tls_policy]
ca_file = "{ca.ca_file}"
fetch_timeout = 10
[queue]
run_interval = 1.0
min_backoff = 1.0
max_backoff = 2.0
max_lifetime = {max_lifetime}
"""
            )

        yield sender, good, bad, web


def send(server, rcpt: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        s.sendmail(
            "sender@localhost",
            [rcpt],
            f"From: sender@localhost\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\n{subject}\r\n",
        )


def delivery_lines(server, rcpt: str) -> list[str]:
    return [line for line in server.log().splitlines() if f"to=<{rcpt}>" in line]


def delivered(server, peer, rcpt: str) -> str:
    """Send to `rcpt`, wait until `peer` has it: the sender's status=sent log line."""
    send(server, rcpt, f"to {rcpt}")
    assert wait_for(lambda: maildir_messages(peer.data_dir, rcpt), 30), server.log()
    assert wait_for(
        lambda: any("status=sent" in x for x in delivery_lines(server, rcpt)), timeout=10
    ), server.log()
    (line,) = [x for x in delivery_lines(server, rcpt) if "status=sent" in x]
    return line


def test_enforce_policy_with_a_bad_certificate_defers_and_sends_nothing(world):
    sender, _good, bad, web = world
    server = sender()
    send(server, "user@enforce-bad.test", "enforce bad")
    assert wait_for(
        lambda: any(
            "status=deferred" in x for x in delivery_lines(server, "user@enforce-bad.test")
        ),
        timeout=30,
    ), server.log()
    (line, *_) = delivery_lines(server, "user@enforce-bad.test")
    assert "dsn=4.7.5" in line and "policy=mta-sts:enforce" in line, line
    assert "TLS required for enforce-bad.test (MTA-STS policy, enforce)" in line, line
    assert "certificate verify failed" in line, line
    assert ("mta-sts.enforce-bad.test", "/.well-known/mta-sts.txt") in web.requests
    # Nothing reached the peer: no message in its Maildir, nothing queued there.
    assert maildir_messages(bad.data_dir, "user@enforce-bad.test") == []
    assert "queued" not in bad.log() and "status=sent" not in bad.log(), bad.log()


def test_enforce_policy_with_a_good_certificate_delivers_and_logs_verified(world):
    sender, good, _bad, _web = world
    server = sender()
    line = delivered(server, good, "user@enforce-good.test")
    assert "tls=verified TLSv1." in line and "policy=mta-sts:enforce" in line, line
    assert "Verified TLS connection established to mx.good.test[127.0.13.2]" in server.log()


def test_mx_not_in_the_enforced_policy_is_not_used(world):
    sender, good, _bad, _web = world
    server = sender()
    send(server, "user@mismatch.test", "mismatch")
    assert wait_for(
        lambda: any("status=deferred" in x for x in delivery_lines(server, "user@mismatch.test")),
        timeout=30,
    ), server.log()
    (line, *_) = delivery_lines(server, "user@mismatch.test")
    assert "dsn=4.7.5" in line and "is not allowed by the MTA-STS policy" in line, line
    assert maildir_messages(good.data_dir, "user@mismatch.test") == []
    assert "queued" not in good.log(), good.log()


def test_testing_mode_with_a_bad_certificate_delivers_and_logs_the_failure(world):
    sender, _good, bad, _web = world
    server = sender()
    line = delivered(server, bad, "user@testing-bad.test")
    assert "tls=encrypted TLSv1." in line and "policy=mta-sts:testing" in line, line
    assert "TLS policy mta-sts:testing of testing-bad.test not met" in server.log()


def test_expired_mail_under_an_enforced_policy_bounces_with_the_reason(world):
    sender, _good, bad, _web = world
    server = sender(max_lifetime=3.0)
    send(server, "user@enforce-bad.test", "expires")

    def bounces():
        return maildir_messages(server.data_dir, "sender@localhost")

    assert wait_for(bounces, timeout=40), server.log()
    report = email.message_from_bytes(bounces()[0].read_bytes(), policy=email.policy.default)
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    text = str(status)
    assert "Action: failed" in text, text
    assert "TLS required for enforce-bad.test (MTA-STS policy, enforce)" in text, text
    assert maildir_messages(bad.data_dir, "user@enforce-bad.test") == []
