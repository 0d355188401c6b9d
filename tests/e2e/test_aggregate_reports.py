"""Aggregate reports end to end: records in reports.db, `pigeon reports send --now` (or
the period's end), the rua= destinations looked up in a real DNS server on loopback,
and the reports delivered by pigeon itself to local mailboxes, where they are
gunzipped and parsed: the counts are right, a destination under its size limit and
an external one without authorisation (RFC 7489 §6.2, §7.1) get nothing."""

from __future__ import annotations

import email
import email.policy
import gzip
import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from secure_helpers import https_on_443

from pigeon.reports.records import DkimAuth, DmarcPublished, DmarcRecord, SpfAuth, TlsRecord
from pigeon.reports.store import StoreSink
from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.httpsserver import Answer
from pigeon.testing.live import maildir_messages, wait_for
from pigeon.testing.testca import TestCa

pytestmark = pytest.mark.e2e

ZONES = {
    "example.test": """
_dmarc TXT "v=DMARC1; p=none; rua=mailto:dmarc@example.test,mailto:tiny@example.test!1k"
_smtp._tls TXT "v=TLSRPTv1; rua=mailto:tls@example.test,https://example.test/tlsrpt"
sender.test._report._dmarc TXT "v=DMARC1"
""",
    "sender.test": '_dmarc TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.test"\n',
    "noauth.test": '_dmarc TXT "v=DMARC1; p=none; rua=mailto:dmarc@example.test"\n',
}

WEB = "127.0.14.3"  # the https: rua hosts, port 443

MAILBOXES = '[domains."example.test"]\nmailboxes = ["dmarc", "tiny", "tls"]\n'


def _dmarc(domain: str, ip: str, *, when: float, aligned: bool = True) -> DmarcRecord:
    result = "pass" if aligned else "fail"
    return DmarcRecord(
        when=when,
        source_ip=ip,
        header_from=domain,
        envelope_from=domain,
        published=DmarcPublished(domain, "r", "r", "none", "none", 100),
        disposition="none",
        dkim_aligned=aligned,
        spf_aligned=aligned,
        dkim=(DkimAuth(domain, "s1", result),),
        spf=(SpfAuth(domain, "mfrom", result),),
    )


def _tls(success: bool, *, when: float) -> TlsRecord:
    return TlsRecord(
        when=when,
        policy_domain="example.test",
        policy_type="no-policy-found",
        policy_strings=(),
        mx_host="mx.example.test",
        receiving_ip="127.0.0.9",
        success=success,
        result_type=None if success else "starttls-not-supported",
    )


def _feed(data_dir: Path, dmarc: list[DmarcRecord], tls: list[TlsRecord]) -> None:
    """What the DMARC check and the SMTP client of a running pigeon hand to its sink."""
    sink = StoreSink(data_dir / "reports.db")
    for record in dmarc:
        sink.dmarc(record)
    for record in tls:
        sink.tls(record)
    sink.close()


def _attachment(path: Path) -> tuple[email.message.EmailMessage, str, bytes]:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    (part,) = list(msg.iter_attachments())
    return msg, part.get_filename(), gzip.decompress(part.get_content())


def test_reports_send_now_delivers_dmarc_and_tls_reports(pigeon_factory):
    with DnsServer(zones=ZONES) as dns:
        server = pigeon_factory(
            MAILBOXES + f'[delivery]\ndns_servers = ["127.0.0.1:{dns.port}"]\n'
            '[reports]\ndmarc = true\ntls = true\norg_name = "Pigeon Test"\n'
        )
        now = time.time()
        _feed(
            server.data_dir,
            [
                _dmarc("example.test", "192.0.2.1", when=now - 60),
                _dmarc("example.test", "192.0.2.1", when=now - 50),
                _dmarc("example.test", "192.0.2.66", when=now - 40, aligned=False),
                _dmarc("sender.test", "192.0.2.2", when=now - 30),
                _dmarc("sender.test", "192.0.2.2", when=now - 20),
                _dmarc("noauth.test", "192.0.2.3", when=now - 10),
            ],
            [_tls(True, when=now - 5), _tls(True, when=now - 4), _tls(False, when=now - 3)],
        )
        done = server.command("reports", "send", "--now", text=True)
        assert done.returncode == 0, done.stderr
        assert "reports: 2 DMARC, 1 TLS-RPT report(s) queued from 9 record(s)" in done.stdout
        # RFC 7489 §6.2: the report is over tiny@'s 1k limit; §7.1: noauth.test's
        # destination is in another domain that did not agree to receive its reports.
        assert "not sent to tiny@example.test" in done.stderr
        assert (
            "noauth.test: rua dmarc@example.test skipped: external destination not authorised"
            in (done.stderr)
        )
        # The https: rua has no address here: the post fails, logged; the mail goes.
        assert "posted:" not in done.stdout
        assert wait_for(lambda: "not posted to https://example.test/tlsrpt" in server.log(), 10)
        dmarc_box = wait_for(
            lambda: len(maildir_messages(server.data_dir, "dmarc@example.test")) == 2, timeout=30
        )
        assert dmarc_box, server.log()
        assert wait_for(lambda: maildir_messages(server.data_dir, "tls@example.test"), timeout=30)
        assert maildir_messages(server.data_dir, "tiny@example.test") == []

        reports = {}
        for path in maildir_messages(server.data_dir, "dmarc@example.test"):
            msg, name, data = _attachment(path)
            root = ET.fromstring(data)
            domain = root.findtext("policy_published/domain")
            reports[domain] = root
            assert msg["Subject"].startswith(f"Report Domain: {domain} Submitter: pigeon.test ")
            assert name.startswith(f"pigeon.test!{domain}!") and name.endswith(".xml.gz")
            assert msg["From"] == "noreply-reports@pigeon.test"
            assert root.findtext("report_metadata/org_name") == "Pigeon Test"
        assert set(reports) == {"example.test", "sender.test"}
        rows = {
            r.findtext("row/source_ip"): int(r.findtext("row/count"))
            for r in reports["example.test"].iter("record")
        }
        assert rows == {"192.0.2.1": 2, "192.0.2.66": 1}
        assert [int(c.text) for c in reports["sender.test"].iter("count")] == [2]

        (path,) = maildir_messages(server.data_dir, "tls@example.test")
        msg, name, data = _attachment(path)
        assert msg.get_content_type() == "multipart/report"
        assert msg.get_param("report-type") == "tlsrpt"
        assert msg["TLS-Report-Domain"] == "example.test"
        assert name.startswith("pigeon.test!example.test!") and name.endswith(".json.gz")
        (policy,) = json.loads(data)["policies"]
        assert policy["summary"] == {
            "total-successful-session-count": 2,
            "total-failure-session-count": 1,
        }
        assert policy["failure-details"][0]["result-type"] == "starttls-not-supported"

        # Reported records are gone: a second run has nothing to send.
        again = server.command("reports", "send", "--now", text=True)
        assert again.returncode == 0 and "from 0 record(s)" in again.stdout
        # The job and the sink end with the server: a clean stop.
        assert server.stop() == 0
        assert "Traceback" not in server.log()


def test_a_tls_report_is_posted_to_an_https_rua(pigeon_factory, tmp_path):
    """RFC 8460 §3: rua=https://... gets the gzipped JSON by POST (§5.3:
    application/tlsrpt+gzip), over TLS checked against the CA of
    `[tls_policy] ca_file`; an address that refuses it (HTTP 500) is logged."""
    ca = TestCa(tmp_path / "ca")
    cert, key = ca.issue("reports.example.test", "refuses.example.test")
    zones = {
        "example.test": '_smtp._tls TXT "v=TLSRPTv1; rua=https://reports.example.test/tlsrpt?k=1,'
        'https://refuses.example.test/x"\n'
        f"reports A {WEB}\nrefuses A {WEB}\n"
    }
    answers = {
        "reports.example.test": Answer(b"thanks\n", 201, path="/tlsrpt?k=1"),
        "refuses.example.test": Answer(b"no\n", 500, path="/x"),
    }
    web = https_on_443(WEB, cert, key, answers)
    with web, DnsServer(zones=zones) as dns:
        server = pigeon_factory(
            MAILBOXES + f'[delivery]\ndns_servers = ["127.0.0.1:{dns.port}"]\n'
            f'[tls_policy]\nca_file = "{ca.ca_file}"\n'
            "[reports]\ntls = true\n"
        )
        now = time.time()
        _feed(server.data_dir, [], [_tls(True, when=now - 5), _tls(False, when=now - 3)])
        done = server.command("reports", "send", "--now", text=True)
        assert done.returncode == 0, done.stderr
        assert "reports: 0 DMARC, 0 TLS-RPT report(s) queued from 2 record(s)" in done.stdout
        assert "posted: https://reports.example.test/tlsrpt?k=1" in done.stdout, done.stdout
        assert "refuses.example.test" not in done.stdout
        assert wait_for(lambda: "HTTP status 500" in server.log(), 10), server.log()
        taken = [p for p in web.posts if p.host == "reports.example.test"]
        assert len(taken) == 1 and taken[0].path == "/tlsrpt?k=1"
        assert taken[0].headers["content-type"] == "application/tlsrpt+gzip"
        (policy,) = json.loads(gzip.decompress(taken[0].body))["policies"]
        assert policy["summary"] == {
            "total-successful-session-count": 1,
            "total-failure-session-count": 1,
        }
        assert maildir_messages(server.data_dir, "tls@example.test") == []  # no mail


def test_the_server_sends_at_the_end_of_each_period(pigeon_factory):
    with DnsServer(zones=ZONES) as dns:
        server = pigeon_factory(
            MAILBOXES + f'[delivery]\ndns_servers = ["127.0.0.1:{dns.port}"]\n'
            "[reports]\ndmarc = true\ninterval = 2\n"
        )
        _feed(server.data_dir, [_dmarc("example.test", "192.0.2.1", when=time.time() - 10)], [])
        assert wait_for(
            lambda: maildir_messages(server.data_dir, "dmarc@example.test"), timeout=30
        ), server.log()
        (path,) = maildir_messages(server.data_dir, "dmarc@example.test")
        _, _, data = _attachment(path)
        assert [int(c.text) for c in ET.fromstring(data).iter("count")] == [1]


def test_reports_send_when_reports_are_off(pigeon_factory):
    server = pigeon_factory(MAILBOXES)
    done = server.command("reports", "send", text=True)
    assert done.returncode == 78
    assert "reports are off" in done.stderr


def test_with_worker_processes_the_main_one_reports(pigeon_factory):
    """Every process has its sink over the same reports.db; the main one reports."""
    with DnsServer(zones=ZONES) as dns:
        server = pigeon_factory(
            "workers = 2\n" + MAILBOXES + f'[delivery]\ndns_servers = ["127.0.0.1:{dns.port}"]\n'
            "[reports]\ndmarc = true\ntls = true\n"
        )
        _feed(server.data_dir, [_dmarc("example.test", "192.0.2.1", when=time.time() - 5)], [])
        done = server.command("reports", "send", "--now", text=True)
        assert done.returncode == 0, done.stderr
        assert "reports: 1 DMARC, 0 TLS-RPT report(s) queued from 1 record(s)" in done.stdout
        assert wait_for(lambda: maildir_messages(server.data_dir, "dmarc@example.test"), timeout=30)
        assert server.stop() == 0
        assert "Traceback" not in server.log()
