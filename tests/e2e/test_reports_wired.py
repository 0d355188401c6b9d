"""The aggregate reports fed by the real checks: a message our inbound DMARC check
evaluated and a delivery our SMTP client made (no record written by the test) end up
in the DMARC and TLS-RPT reports `pigeon reports send --now` queues, delivered here to
local mailboxes and parsed back (RFC 7489 §7.2, RFC 8460 §4)."""

from __future__ import annotations

import email
import email.policy
import gzip
import json
import socket
import xml.etree.ElementTree as ET

import dkim
import pytest
from dkim_helpers import published_txt, zone_records

from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.live import PigeonProcess, maildir_messages, recv_reply, wait_for

pytestmark = pytest.mark.e2e

ZONES = {
    # The sender of the inbound message: SPF passes for 127.0.0.2, DMARC p=none,
    # reports to our dmarc@ mailbox, which example.test agrees to (RFC 7489 §7.1).
    "sender.test": (
        '@ TXT "v=spf1 ip4:127.0.0.2 -all"\n'
        '_dmarc TXT "v=DMARC1; p=none; rua=mailto:dmarc@example.test"\n'
    ),
    "example.test": 'sender.test._report._dmarc TXT "v=DMARC1"\n',
    # The destination of the outbound message: its MX is a second pigeon, and it
    # asks for TLS reports at our tls@ mailbox.
    "remote.test": (
        "@ MX 10 mx.remote.test.\nmx A 127.0.0.3\n"
        '_smtp._tls TXT "v=TLSRPTv1; rua=mailto:tls@example.test"\n'
    ),
}


def _send(port: int, source: str, sender: str, recipient: str, message: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        assert recv_reply(s).startswith(b"220")
        for line in (b"EHLO client.sender.test", f"MAIL FROM:<{sender}>".encode()):
            s.sendall(line + b"\r\n")
            assert recv_reply(s).startswith(b"250")
        s.sendall(f"RCPT TO:<{recipient}>\r\n".encode())
        assert recv_reply(s).startswith(b"250")
        s.sendall(b"DATA\r\n")
        assert recv_reply(s).startswith(b"354")
        s.sendall(message.encode() + b"\r\n.\r\n")
        done = recv_reply(s)
        s.sendall(b"QUIT\r\n")
        return done


def _report(path) -> tuple[str, bytes]:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    (part,) = list(msg.iter_attachments())
    return part.get_filename(), gzip.decompress(part.get_content())


def test_the_dmarc_check_and_the_smtp_client_feed_the_reports(tmp_path):
    keygen = PigeonProcess(tmp_path / "keys", f'[dkim]\nkey_dir = "{tmp_path / "dkim"}"\n')
    made = keygen.command("dkim", "keygen", "example.test", "--selector", "r1", text=True)
    assert made.returncode == 0, made.stderr
    zones = dict(ZONES, **{"example.test": ZONES["example.test"] + zone_records(made.stdout)})
    with DnsServer(zones=zones) as dns:
        peer = PigeonProcess(
            tmp_path / "peer", '[domains."remote.test"]\nmailboxes = ["dave"]\n', host="127.0.0.3"
        )
        with peer.start():
            server = PigeonProcess(
                tmp_path / "server",
                'relay_networks = ["127.0.0.1/32"]\n'
                '[domains."example.test"]\nmailboxes = ["carol", "dmarc", "tls"]\n'
                f'[delivery]\ndns_servers = ["127.0.0.1:{dns.port}"]\nremote_port = {peer.port}\n'
                '[reports]\ndmarc = true\ntls = true\norg_name = "Wired Test"\n'
                'from = "reports@example.test"\n'
                f'[dkim]\nkey_dir = "{tmp_path / "dkim"}"\n',
                hostname="mail.example.test",
            )
            with server.start():
                inbound = (
                    "From: <bob@sender.test>\r\nTo: <carol@example.test>\r\nSubject: in\r\n\r\nhi"
                )
                reply = _send(
                    server.port, "127.0.0.2", "bob@sender.test", "carol@example.test", inbound
                )
                assert reply.startswith(b"250"), reply
                outbound = (
                    "From: <carol@example.test>\r\nTo: <dave@remote.test>\r\nSubject: out\r\n\r\nhi"
                )
                reply = _send(
                    server.port, "127.0.0.1", "carol@example.test", "dave@remote.test", outbound
                )
                assert reply.startswith(b"250"), reply
                assert wait_for(lambda: maildir_messages(peer.data_dir, "dave@remote.test"), 60)
                assert maildir_messages(server.data_dir, "carol@example.test")

                # The sink writes behind (about a second): ask again until both are in.
                def both_reported() -> bool:
                    done = server.command("reports", "send", "--now", text=True)
                    assert done.returncode == 0, done.stderr
                    return bool(
                        wait_for(lambda: maildir_messages(server.data_dir, "dmarc@example.test"), 2)
                        and wait_for(
                            lambda: maildir_messages(server.data_dir, "tls@example.test"), 2
                        )
                    )

                assert wait_for(both_reported, 40, interval=1.0), server.log()
                dmarc = maildir_messages(server.data_dir, "dmarc@example.test")
                tls = maildir_messages(server.data_dir, "tls@example.test")
        # The reports are our own mail: DKIM-signed for their From: domain (RFC 8460
        # §5.3 asks it of TLS reports), both signatures verifying against the zone.
        keys = published_txt(
            dns.port, ["r1-rsa._domainkey.example.test", "r1-ed25519._domainkey.example.test"]
        )
    for path in (dmarc[0], tls[0]):
        signed = path.read_bytes().replace(b"\n", b"\r\n")
        assert signed.count(b"DKIM-Signature:") == 2, signed[:2000]
        for index in (0, 1):
            assert dkim.DKIM(signed).verify(
                idx=index, dnsfunc=lambda name, timeout=5: keys[name.decode().rstrip(".")].encode()
            )
    name, xml = _report(dmarc[0])
    assert name.endswith(".xml.gz") and "!sender.test!" in name
    feedback = ET.fromstring(xml)
    assert feedback.findtext("policy_published/domain") == "sender.test"
    (record,) = feedback.findall("record")
    assert record.findtext("row/source_ip") == "127.0.0.2"
    assert record.findtext("row/count") == "1"
    assert record.findtext("row/policy_evaluated/spf") == "pass"
    assert record.findtext("identifiers/header_from") == "sender.test"
    assert record.findtext("auth_results/spf/result") == "pass"
    name, raw = _report(tls[0])
    assert name.endswith(".json.gz") and "!remote.test!" in name
    report = json.loads(raw)
    (policy,) = report["policies"]
    assert policy["policy"]["policy-domain"] == "remote.test"
    assert policy["policy"]["policy-type"] == "no-policy-found"
    assert policy["summary"]["total-successful-session-count"] >= 1
