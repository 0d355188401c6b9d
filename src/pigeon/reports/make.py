"""From stored records to report messages ready to queue: grouping, documents, mail, sizes.

Contract:
  * `make_dmarc_reports(groups, resolver, who, begin, end)` and
    `make_tls_reports(...)`, given the records grouped per domain
    (`group_dmarc`, `group_tls`), return ([`OutgoingReport`], notes): one report
    per policy domain that has destinations now (pigeon.reports.
    destinations), as a whole RFC 5322 message (CRLF) with its
    recipients. `notes` are lines for the operator's log: domains without
    destinations, skipped URIs, and every destination left out because the
    report is over its size limit (RFC 7489 §6.2: the report is not sent to
    that URI; the size compared is that of the whole message as queued).
    The §7.2.2 error report that could say so is not sent.
  * DMARC (RFC 7489 §7.2.1.1): multipart/mixed, a short text part, then the
    XML gzipped as application/gzip named
    `REPORTER!POLICY-DOMAIN!BEGIN!END.xml.gz`; Subject "Report Domain: D
    Submitter: REPORTER Report-ID: <ID>".
  * TLS-RPT (RFC 8460 §5.3): multipart/report; report-type="tlsrpt", the
    headers TLS-Report-Domain and TLS-Report-Submitter, a text part, then
    the JSON gzipped as application/tlsrpt+gzip named
    `REPORTER!POLICY-DOMAIN!BEGIN!END!UNIQUE.json.gz` (§5.1); the same
    Subject form.
  * A TLS-RPT destination that is an https: URL (RFC 8460 §3) gets its own
    `OutgoingReport` with that `url`, no recipients, and as `message` the
    gzipped JSON (RFC 8460 §5.3: application/tlsrpt+gzip) to POST there.
  * Every report has From: `who.email`, Auto-Submitted: auto-generated
    (RFC 3834 §5), a Date and a Message-ID. No clock or randomness but the
    `token` callable (report ids) and the Date field.
"""

from __future__ import annotations

import email.policy
import email.utils
import functools
import gzip
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage

from pigeon.dns.api import Resolver
from pigeon.reports.destinations import (
    Destination,
    SameOrg,
    dmarc_destinations,
    same_tree,
    tls_destinations,
)
from pigeon.reports.dmarc import DmarcGroup, ReportMeta, dmarc_xml
from pigeon.reports.tlsrpt import TlsPolicyGroup, tls_json, tls_report

__all__ = ["OutgoingReport", "Reporter", "make_dmarc_reports", "make_tls_reports"]


@dataclass(frozen=True, slots=True)
class Reporter:
    """Who we are in reports ([reports] and `hostname`)."""

    name: str  # our host name: the "receiver"/"submitter" of file names and subjects
    org_name: str
    email: str  # From: and envelope sender
    contact: str = ""


@dataclass(frozen=True, slots=True)
class OutgoingReport:
    kind: str  # "dmarc" | "tls"
    domain: str
    recipients: tuple[str, ...]
    message: bytes
    filename: str
    messages: int  # DMARC: messages counted; TLS: sessions counted
    #: TLS-RPT to an https: rua: POST `message` (the gzipped JSON) there, no mail
    url: str = ""


#: CRLF lines; fields unfolded up to RFC 5322 §2.1.1's 998 octets, so that the
#: Subject of §7.2.1.1 and the attachment's file name stay whole on one line.
_POLICY = email.policy.SMTP.clone(max_line_length=998)


def _token() -> str:
    return secrets.token_hex(6)


def _message(
    who: Reporter, to: Sequence[str], domain: str, report_id: str, text: str
) -> EmailMessage:
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = who.email
    msg["To"] = ", ".join(to)
    msg["Subject"] = f"Report Domain: {domain} Submitter: {who.name} Report-ID: <{report_id}>"
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=who.name)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834 §5
    msg.set_content(text, charset="us-ascii")
    return msg


def _describe(kind: str, rfc: str, who: Reporter, domain: str, filename: str) -> str:
    return (
        f"This is an aggregate {kind} report ({rfc}) for {domain}\n"
        f"from {who.org_name} ({who.name}), attached as {filename}.\n"
    )


def _dmarc_message(
    who: Reporter, domain: str, report_id: str, filename: str, document: bytes, to: Sequence[str]
) -> bytes:
    """RFC 7489 §7.2.1.1: the report as a gzip attachment, with its Subject."""
    text = _describe("DMARC", "RFC 7489", who, domain, filename)
    msg = _message(who, to, domain, report_id, text)
    gz = gzip.compress(document, mtime=0)
    msg.add_attachment(gz, maintype="application", subtype="gzip", filename=filename)
    return msg.as_bytes()


def _tls_message(
    who: Reporter, domain: str, report_id: str, filename: str, document: bytes, to: Sequence[str]
) -> bytes:
    """RFC 8460 §5.3: multipart/report; report-type="tlsrpt", with the TLS-Report-* fields."""
    text = _describe("TLS", "RFC 8460", who, domain, filename)
    msg = _message(who, to, domain, report_id, text)
    msg["TLS-Report-Domain"] = domain
    msg["TLS-Report-Submitter"] = who.name
    gz = gzip.compress(document, mtime=0)
    msg.add_attachment(gz, maintype="application", subtype="tlsrpt+gzip", filename=filename)
    msg.set_type("multipart/report")
    msg.set_param("report-type", "tlsrpt")
    return msg.as_bytes()


def _fit(
    kind: str,
    domain: str,
    destinations: list[Destination],
    compose: Callable[[Sequence[str]], bytes],
    notes: list[str],
) -> tuple[bytes, tuple[str, ...]] | None:
    """The message and the destinations whose size limit it fits (RFC 7489 §6.2)."""
    everyone = list(dict.fromkeys(d.address for d in destinations))
    size = len(compose(everyone))
    fitting = [d for d in destinations if d.max_size is None or size <= d.max_size]
    for d in destinations:
        if d not in fitting:
            notes.append(
                f"{kind} report for {domain} not sent to {d.address}: {size} octets, "
                f"over the limit of {d.max_size} in {d.uri!r}"
            )
    if not fitting:
        return None
    recipients = tuple(dict.fromkeys(d.address for d in fitting))
    return compose(recipients), recipients


async def make_dmarc_reports(
    groups: Mapping[str, DmarcGroup],
    resolver: Resolver,
    who: Reporter,
    begin: int,
    end: int,
    *,
    same_org: SameOrg = same_tree,
    token: Callable[[], str] = _token,
) -> tuple[list[OutgoingReport], list[str]]:
    """The DMARC aggregate reports of `groups` (`group_dmarc`; module contract)."""
    out: list[OutgoingReport] = []
    notes: list[str] = []
    for domain, group in sorted(groups.items()):
        destinations, found = await dmarc_destinations(resolver, domain, same_org)
        notes += found
        if not destinations:
            continue
        report_id = f"{begin}.{token()}@{who.name}"
        meta = ReportMeta(who.org_name, who.email, who.contact, report_id, begin, end)
        filename = f"{who.name}!{domain}!{begin}!{end}.xml.gz"
        document = dmarc_xml(meta, group)

        compose = functools.partial(_dmarc_message, who, domain, report_id, filename, document)
        fitted = _fit("DMARC", domain, destinations, compose, notes)
        if fitted is not None:
            message, recipients = fitted
            out.append(
                OutgoingReport("dmarc", domain, recipients, message, filename, group.messages)
            )
    return out, notes


async def make_tls_reports(
    groups_by_domain: Mapping[str, list[TlsPolicyGroup]],
    resolver: Resolver,
    who: Reporter,
    begin: int,
    end: int,
    *,
    token: Callable[[], str] = _token,
) -> tuple[list[OutgoingReport], list[str]]:
    """The TLS-RPT reports of `groups_by_domain` (`group_tls`; module contract)."""
    out: list[OutgoingReport] = []
    notes: list[str] = []
    for domain, groups in sorted(groups_by_domain.items()):
        destinations, found = await tls_destinations(resolver, domain)
        notes += found
        if not destinations:
            continue
        unique = token()
        report_id = f"{begin}.{unique}@{who.name}"
        meta = ReportMeta(who.org_name, who.email, who.contact, report_id, begin, end)
        filename = f"{who.name}!{domain}!{begin}!{end}!{unique}.json.gz"
        document = tls_json(tls_report(meta, domain, groups))

        sessions = sum(g.sessions for g in groups)
        mailboxes = [d for d in destinations if not d.url]
        compose = functools.partial(_tls_message, who, domain, report_id, filename, document)
        fitted = _fit("TLS", domain, mailboxes, compose, notes) if mailboxes else None
        if fitted is not None:
            message, recipients = fitted
            out.append(OutgoingReport("tls", domain, recipients, message, filename, sessions))
        posted = gzip.compress(document, mtime=0)  # RFC 8460 §5.3: application/tlsrpt+gzip
        for url in dict.fromkeys(d.url for d in destinations if d.url):
            out.append(OutgoingReport("tls", domain, (), posted, filename, sessions, url=url))
    return out, notes
