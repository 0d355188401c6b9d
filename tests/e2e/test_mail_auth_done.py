"""Issue 13's "Done when", tried as a new user would, end to end.

pigeon A runs as mail.example.test at 127.0.0.1 and sends for example.test:
its operator runs `pigeon dkim keygen example.test`, publishes what `pigeon
dns example.test` prints (zone-file lines, as printed) in a DNS server on
loopback, and a user sends through submission (587, STARTTLS, AUTH) to
carol@elsewhere.test. elsewhere.test's MX is pigeon B (receiver.test, on
127.0.0.2), an independent server with its own inbound checks (the defaults
of `[mail_auth]`) asking the same DNS server. A finds B through the MX
record; B writes its one Authentication-Results header, which must say
dkim=pass (both signatures: rsa-sha256 and ed25519-sha256), spf=pass and
dmarc=pass. The other "Done when" lines have their own tests:
test_mail_auth_inbound.py (a forged p=reject message refused at the end of
data), test_mta_sts.py (enforce policy and a bad certificate: deferred, not
sent), test_dns_command.py (`--check` names each missing record).
"""

from __future__ import annotations

import re
import smtplib

import pytest
from dkim_helpers import zone_records
from secure_helpers import add_user, insecure_context

from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.live import PigeonProcess, maildir_messages, wait_for

pytestmark = pytest.mark.e2e

USER, PASSWORD = "alice@example.test", "correct horse battery"
MESSAGE = (
    "From: Alice <alice@example.test>\r\nTo: Carol <carol@elsewhere.test>\r\n"
    "Subject: hello from a real domain\r\nMessage-ID: <done-when@example.test>\r\n"
    "Date: Sun, 06 Dec 2026 08:00:00 +0000\r\n\r\nSigned, aligned, and passed.\r\n"
)
PTR_ZONE = "127.in-addr.arpa"


def _sender(tmp_path, dns_port: int, remote_port: int) -> PigeonProcess:
    return PigeonProcess(
        tmp_path / "a",
        '[domains."example.test"]\nmailboxes = ["alice"]\n'
        f'[dkim]\nkey_dir = "{tmp_path / "dkim"}"\n'
        f'[delivery]\ndns_servers = ["127.0.0.1:{dns_port}"]\nown_addresses = ["127.0.0.1"]\n'
        f"remote_port = {remote_port}\n",
        hostname="mail.example.test",
    )


def _published_records(tmp_path) -> list[str]:
    """What the operator publishes: keygen's keys and every line `pigeon dns` prints."""
    with DnsServer() as placeholder:  # a configuration to print from; nothing asked yet
        operator = _sender(tmp_path, placeholder.port, 25)
        made = operator.command("dkim", "keygen", "example.test", text=True)
        assert made.returncode == 0, made.stderr
        printed = operator.command("dns", "example.test", text=True)
    assert printed.returncode == 0, printed.stderr
    records = zone_records(printed.stdout).splitlines()
    assert set(zone_records(made.stdout).splitlines()) <= set(records)
    return records


def _zones(records: list[str]) -> dict[str, str]:
    forward = [r for r in records if not r.split()[0].endswith(PTR_ZONE + ".")]
    reverse = [r for r in records if r.split()[0].endswith(PTR_ZONE + ".")]
    return {
        "example.test": "\n".join(forward) + "\n",
        PTR_ZONE: "\n".join(reverse) + "\n",
        # The receiving side's own domain: its MX is pigeon B on 127.0.0.2.
        "elsewhere.test": "@ MX 10 mx.elsewhere.test.\nmx A 127.0.0.2\n",
    }


def test_keygen_publish_submit_and_the_receiver_finds_dkim_spf_and_dmarc_pass(tmp_path):
    records = _published_records(tmp_path)
    assert any("v=spf1" in r for r in records) and any(r.startswith("_dmarc.") for r in records)
    with DnsServer(zones=_zones(records)) as dns_server:
        receiver = PigeonProcess(
            tmp_path / "b",
            '[domains."elsewhere.test"]\nmailboxes = ["carol"]\n'
            f'[delivery]\ndns_servers = ["127.0.0.1:{dns_server.port}"]\n',
            hostname="receiver.test",
            host="127.0.0.2",
        )
        with receiver.start():
            sender = _sender(tmp_path, dns_server.port, receiver.port)
            with sender.start():
                add_user(sender, USER, PASSWORD)
                with smtplib.SMTP("127.0.0.1", sender.submission_port, timeout=30) as client:
                    client.starttls(context=insecure_context())
                    client.login(USER, PASSWORD)
                    client.sendmail(USER, ["carol@elsewhere.test"], MESSAGE)
                arrived = wait_for(
                    lambda: maildir_messages(receiver.data_dir, "carol@elsewhere.test"), 60
                )
                assert arrived, sender.log() + receiver.log()
                message = arrived[0].read_bytes()
    head = message.split(b"\n\n", 1)[0].decode()
    unfolded = re.sub(r"\r?\n[ \t]+", " ", head)
    ours = [
        line
        for line in unfolded.splitlines()
        if line.lower().startswith("authentication-results: receiver.test")
    ]
    assert len(ours) == 1, head
    results = ours[0]
    # Both of pigeon A's signatures verify at B, and SPF and DMARC pass, aligned.
    assert len(re.findall(r"\bdkim=pass\b[^;]*header\.d=example\.test", results)) == 2, results
    assert re.search(r"\bspf=pass\b[^;]*smtp\.mailfrom=\S*example\.test", results), results
    assert re.search(r"\bspf=pass\b[^;]*smtp\.helo=mail\.example\.test", results), results
    assert re.search(r"\bdmarc=pass\b[^;]*header\.from=example\.test", results), results
    assert head.count("DKIM-Signature:") == 2, head
