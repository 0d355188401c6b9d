"""DMARC aggregate reports: rows counted per policy domain, and the XML of RFC 7489 Appendix C."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from report_samples import dmarc

from pigeon.reports.dmarc import ReportMeta, dmarc_xml, group_dmarc
from pigeon.reports.records import DmarcPublished

META = ReportMeta(
    "Example Receiver", "noreply@rx.test", "https://rx.test/dmarc", "R1", 86400, 172800
)


def _children(element: ET.Element) -> list[str]:
    return [child.tag for child in element]


def test_records_are_counted_by_row_per_policy_domain():
    records = [
        dmarc("192.0.2.1"),
        dmarc("192.0.2.1"),
        dmarc("192.0.2.1", disposition="reject", dkim_aligned=False, spf_aligned=False),
        dmarc("192.0.2.2"),
        dmarc("192.0.2.9", domain="other.test", envelope_from="bounce.other.test"),
    ]
    groups = group_dmarc(records)
    assert set(groups) == {"example.org", "other.test"}
    rows = groups["example.org"].rows
    assert sorted(rows.values()) == [1, 1, 2]
    assert groups["example.org"].messages == 4
    assert groups["other.test"].messages == 1


def test_the_latest_record_says_what_was_published():
    newer = DmarcPublished("example.org", "s", "s", "quarantine", "none", 50)
    groups = group_dmarc([dmarc(when=200.0, published=newer), dmarc(when=100.0)])
    assert groups["example.org"].published == newer


def test_xml_has_the_appendix_c_elements_in_order():
    records = [
        dmarc("192.0.2.1"),
        dmarc("192.0.2.1"),
        dmarc("192.0.2.5", disposition="none", dkim_aligned=False, reason="local_policy"),
    ]
    document = dmarc_xml(META, group_dmarc(records)["example.org"])
    assert document.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(document)
    assert root.tag == "feedback"
    assert _children(root) == ["version", "report_metadata", "policy_published", "record", "record"]
    metadata = root.find("report_metadata")
    assert _children(metadata) == [
        "org_name",
        "email",
        "extra_contact_info",
        "report_id",
        "date_range",
    ]
    assert metadata.findtext("org_name") == "Example Receiver"
    assert metadata.findtext("report_id") == "R1"
    assert metadata.findtext("date_range/begin") == "86400"
    assert metadata.findtext("date_range/end") == "172800"
    policy = root.find("policy_published")
    assert _children(policy) == ["domain", "adkim", "aspf", "p", "sp", "pct"]
    assert [policy.findtext(t) for t in _children(policy)] == [
        "example.org",
        "r",
        "s",
        "reject",
        "quarantine",
        "100",
    ]
    first, second = root.findall("record")
    assert _children(first) == ["row", "identifiers", "auth_results"]
    assert _children(first.find("row")) == ["source_ip", "count", "policy_evaluated"]
    # The biggest row first.
    assert first.findtext("row/source_ip") == "192.0.2.1"
    assert first.findtext("row/count") == "2"
    assert _children(first.find("row/policy_evaluated")) == ["disposition", "dkim", "spf"]
    assert first.findtext("row/policy_evaluated/dkim") == "pass"
    assert _children(first.find("identifiers")) == ["envelope_from", "header_from"]
    assert first.findtext("identifiers/header_from") == "example.org"
    assert _children(first.find("auth_results")) == ["dkim", "spf"]
    assert _children(first.find("auth_results/dkim")) == ["domain", "selector", "result"]
    assert _children(first.find("auth_results/spf")) == ["domain", "scope", "result"]
    assert first.findtext("auth_results/spf/scope") == "mfrom"
    evaluated = second.find("row/policy_evaluated")
    assert evaluated.findtext("dkim") == "fail"
    assert evaluated.findtext("reason/type") == "local_policy"
    assert second.findtext("auth_results/dkim/result") == "fail"


def test_no_contact_no_extra_contact_info_and_spf_is_never_missing():
    record = dmarc()
    bare = type(record)(**{**{f: getattr(record, f) for f in record.__slots__}, "spf": ()})
    meta = ReportMeta("Rx", "noreply@rx.test", "", "R2", 0, 86400)
    root = ET.fromstring(dmarc_xml(meta, group_dmarc([bare])["example.org"]))
    assert root.find("report_metadata/extra_contact_info") is None
    spf = root.find("record/auth_results/spf")
    assert (spf.findtext("domain"), spf.findtext("result")) == ("example.org", "none")


def test_text_is_escaped():
    meta = ReportMeta("A & B <Mail>", "noreply@rx.test", "", "R3", 0, 1)
    document = dmarc_xml(meta, group_dmarc([dmarc()])["example.org"])
    assert b"A &amp; B &lt;Mail&gt;" in document
    assert ET.fromstring(document).findtext("report_metadata/org_name") == "A & B <Mail>"
