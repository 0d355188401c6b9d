"""DMARC aggregate reports: records grouped into rows, rows written as the XML of RFC 7489 Appendix C.

Contract:
  * `group_dmarc(records, into=None)` -> {policy domain: `DmarcGroup`}: the records of
    one policy domain (`DmarcPublished.domain`, the domain the DMARC record
    was found at) are counted by row: (source IP, disposition, DKIM and SPF
    alignment, override reason, header From domain, envelope From domain,
    the DKIM and SPF results). The policy reported as published is the one
    of the latest record (a domain may change its record during a period).
  * `dmarc_xml(meta, group)` -> bytes: the `feedback` document of RFC 7489
    Appendix C, UTF-8 with an XML declaration, elements in the schema's
    order: version, report_metadata (org_name, email, extra_contact_info
    when set, report_id, date_range begin/end in Unix seconds),
    policy_published (domain, adkim, aspf, p, sp, pct), then one record per
    row (row: source_ip, count, policy_evaluated: disposition, dkim, spf,
    reason; identifiers: envelope_from, header_from; auth_results: dkim*,
    spf+). A row with no SPF result says spf "none" for the envelope
    domain: the schema asks for at least one.
  * Pure: no I/O, no clock.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from pigeon.reports.records import DkimAuth, DmarcPublished, DmarcRecord, SpfAuth

__all__ = ["DmarcGroup", "DmarcRow", "ReportMeta", "dmarc_xml", "group_dmarc"]


@dataclass(frozen=True, slots=True)
class ReportMeta:
    """Who reports, and for which period (RFC 7489 `ReportMetadataType`, RFC 8460 §4.4)."""

    org_name: str
    email: str  # our reports' From address
    contact: str  # extra_contact_info / contact-info; "" = none
    report_id: str
    begin: int  # Unix seconds, inclusive
    end: int  # Unix seconds


@dataclass(frozen=True, slots=True)
class DmarcRow:
    """What the records of one row share (Appendix C `RecordType`, without the count)."""

    source_ip: str
    disposition: str
    dkim_aligned: bool
    spf_aligned: bool
    reason: str | None
    header_from: str
    envelope_from: str
    dkim: tuple[DkimAuth, ...]
    spf: tuple[SpfAuth, ...]

    @classmethod
    def of(cls, record: DmarcRecord) -> DmarcRow:
        return cls(
            record.source_ip,
            record.disposition,
            record.dkim_aligned,
            record.spf_aligned,
            record.reason,
            record.header_from.lower(),
            record.envelope_from.lower(),
            record.dkim,
            record.spf,
        )


@dataclass(slots=True)
class DmarcGroup:
    """The rows of one policy domain, with their counts."""

    published: DmarcPublished
    rows: Counter[DmarcRow] = field(default_factory=Counter)
    latest: float = float("-inf")

    @property
    def messages(self) -> int:
        return sum(self.rows.values())


def group_dmarc(
    records: Iterable[DmarcRecord], into: dict[str, DmarcGroup] | None = None
) -> dict[str, DmarcGroup]:
    """The records counted by row, per policy domain (module contract), added to
    `into` when given (records read a page at a time)."""
    groups: dict[str, DmarcGroup] = {} if into is None else into
    for record in records:
        domain = record.published.domain.lower().rstrip(".")
        group = groups.get(domain)
        if group is None:
            group = groups[domain] = DmarcGroup(record.published)
        if record.when >= group.latest:
            group.latest, group.published = record.when, record.published
        group.rows[DmarcRow.of(record)] += 1
    return groups


def _add(parent: ET.Element, tag: str, text: object) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = str(text)
    return child


def dmarc_xml(meta: ReportMeta, group: DmarcGroup) -> bytes:
    """The aggregate report document (module contract)."""
    root = ET.Element("feedback")
    _add(root, "version", "1.0")
    metadata = ET.SubElement(root, "report_metadata")
    _add(metadata, "org_name", meta.org_name)
    _add(metadata, "email", meta.email)
    if meta.contact:
        _add(metadata, "extra_contact_info", meta.contact)
    _add(metadata, "report_id", meta.report_id)
    dates = ET.SubElement(metadata, "date_range")
    _add(dates, "begin", meta.begin)
    _add(dates, "end", meta.end)
    published = group.published
    policy = ET.SubElement(root, "policy_published")
    _add(policy, "domain", published.domain.lower().rstrip("."))
    _add(policy, "adkim", published.adkim)
    _add(policy, "aspf", published.aspf)
    _add(policy, "p", published.p)
    _add(policy, "sp", published.sp)
    _add(policy, "pct", published.pct)
    # Most messages first: the rows a reader looks at first.
    for row, count in sorted(group.rows.items(), key=lambda item: (-item[1], item[0].source_ip)):
        record = ET.SubElement(root, "record")
        row_element = ET.SubElement(record, "row")
        _add(row_element, "source_ip", row.source_ip)
        _add(row_element, "count", count)
        evaluated = ET.SubElement(row_element, "policy_evaluated")
        _add(evaluated, "disposition", row.disposition)
        _add(evaluated, "dkim", "pass" if row.dkim_aligned else "fail")
        _add(evaluated, "spf", "pass" if row.spf_aligned else "fail")
        if row.reason:
            reason = ET.SubElement(evaluated, "reason")
            _add(reason, "type", row.reason)
        identifiers = ET.SubElement(record, "identifiers")
        _add(identifiers, "envelope_from", row.envelope_from)
        _add(identifiers, "header_from", row.header_from)
        results = ET.SubElement(record, "auth_results")
        for dkim in row.dkim:
            element = ET.SubElement(results, "dkim")
            _add(element, "domain", dkim.domain)
            if dkim.selector:
                _add(element, "selector", dkim.selector)
            _add(element, "result", dkim.result)
        spf_results = row.spf or (SpfAuth(row.envelope_from or row.header_from, "mfrom", "none"),)
        for spf in spf_results:
            element = ET.SubElement(results, "spf")
            _add(element, "domain", spf.domain)
            _add(element, "scope", spf.scope)
            _add(element, "result", spf.result)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
