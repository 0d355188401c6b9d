"""Report mail: RFC 7489 §7.2.1.1 and RFC 8460 §5.3 messages, and the size limits of §6.2."""

from __future__ import annotations

import asyncio
import email
import email.policy
import gzip
import json
import xml.etree.ElementTree as ET

from report_samples import dmarc, tls

from pigeon.reports.dmarc import group_dmarc
from pigeon.reports.make import Reporter, make_dmarc_reports, make_tls_reports
from pigeon.reports.tlsrpt import group_tls
from pigeon.testing.fakedns import FakeResolver

WHO = Reporter("mx.rx.test", "Rx Org", "noreply-reports@mx.rx.test", "postmaster@rx.test")

ZONES = {
    "example.org": '_dmarc TXT "v=DMARC1; p=reject; rua=mailto:big@example.org,mailto:tiny@example.org!1k"\n',
    "small.test": '_dmarc TXT "v=DMARC1; p=none; rua=mailto:tiny@small.test!100"\n',
    "example.net": '_smtp._tls TXT "v=TLSRPTv1; rua=mailto:tls@example.net"\n',
}


def parse(raw: bytes) -> email.message.EmailMessage:
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_dmarc_report_mail():
    records = [dmarc(), dmarc(), dmarc("192.0.2.7", spf_aligned=False)]
    reports, notes = asyncio.run(
        make_dmarc_reports(
            group_dmarc(records), FakeResolver(ZONES), WHO, 86400, 172800, token=lambda: "abc"
        )
    )
    (report,) = reports
    # The whole message is far over 1 KiB: tiny@ is left out, and said (RFC 7489 §6.2).
    assert report.recipients == ("big@example.org",)
    assert len(notes) == 1 and "not sent to tiny@example.org" in notes[0]
    assert "over the limit of 1024" in notes[0]
    assert report.messages == 3
    msg = parse(report.message)
    assert msg["Subject"] == (
        "Report Domain: example.org Submitter: mx.rx.test Report-ID: <86400.abc@mx.rx.test>"
    )
    assert msg["From"] == "noreply-reports@mx.rx.test"
    assert msg["To"] == "big@example.org"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Message-ID"] and msg["Date"]
    assert msg.get_content_type() == "multipart/mixed"
    text, attachment = msg.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert attachment.get_content_type() == "application/gzip"
    assert attachment.get_filename() == "mx.rx.test!example.org!86400!172800.xml.gz"
    root = ET.fromstring(gzip.decompress(attachment.get_content()))
    assert root.findtext("report_metadata/report_id") == "86400.abc@mx.rx.test"
    assert root.findtext("report_metadata/email") == "noreply-reports@mx.rx.test"
    assert root.findtext("report_metadata/extra_contact_info") == "postmaster@rx.test"
    assert sum(int(c.text) for c in root.iter("count")) == 3


def test_a_report_over_every_limit_is_not_made():
    reports, notes = asyncio.run(
        make_dmarc_reports(
            group_dmarc([dmarc(domain="small.test")]), FakeResolver(ZONES), WHO, 0, 1
        )
    )
    assert reports == []
    assert "not sent to tiny@small.test" in notes[0]


def test_no_destination_no_report():
    reports, notes = asyncio.run(
        make_dmarc_reports(group_dmarc([dmarc(domain="none.test")]), FakeResolver(ZONES), WHO, 0, 1)
    )
    assert reports == [] and notes


def test_tls_report_mail():
    records = [tls(), tls(False, result_type="validation-failure")]
    reports, notes = asyncio.run(
        make_tls_reports(group_tls(records), FakeResolver(ZONES), WHO, 0, 86400, token=lambda: "u1")
    )
    assert notes == []
    (report,) = reports
    assert report.recipients == ("tls@example.net",)
    assert report.messages == 2
    msg = parse(report.message)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "tlsrpt"
    assert msg["TLS-Report-Domain"] == "example.net"
    assert msg["TLS-Report-Submitter"] == "mx.rx.test"
    assert (
        msg["Subject"]
        == "Report Domain: example.net Submitter: mx.rx.test Report-ID: <0.u1@mx.rx.test>"
    )
    text, attachment = msg.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert attachment.get_content_type() == "application/tlsrpt+gzip"
    assert attachment.get_filename() == "mx.rx.test!example.net!0!86400!u1.json.gz"
    report_json = json.loads(gzip.decompress(attachment.get_content()))
    assert report_json["report-id"] == "0.u1@mx.rx.test"
    assert report_json["organization-name"] == "Rx Org"
    summary = report_json["policies"][0]["summary"]
    assert summary == {"total-successful-session-count": 1, "total-failure-session-count": 1}
