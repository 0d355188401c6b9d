"""Where a report goes: the rua= of a domain's DMARC (RFC 7489) or TLS-RPT (RFC 8460) record.

Contract:
  * Looked up when the report is made, never stored: the record published
    now is the authority (RFC 7489 §7.1, RFC 8460 §3).
  * `dmarc_destinations(resolver, domain, same_org)` reads the TXT records
    of `_dmarc.DOMAIN`; exactly one must begin with "v=DMARC1" (RFC 7489
    §6.6.3: none or several = no policy, no report). Its `rua=` is a
    comma-separated list of URIs, each with an optional size limit
    `!SIZE[k|m|g|t]` (§6.2: units of 2^10, 2^20, 2^30, 2^40 octets; none =
    octets). Only mailto: URIs exist for aggregate reports (§6.2); others
    are skipped and said. A mailto: address in a domain outside the
    policy domain's organisation (`same_org(a, b)` False) is used only when
    `DOMAIN._report._dmarc.RUADOMAIN` has a TXT record beginning with
    "v=DMARC1" (§7.1, external destination verification); a rua= in that
    record, which §7.1 lets the destination use to rewrite the address, is
    not honoured (the address stays the one the domain published).
  * `tls_destinations(resolver, domain)` reads `_smtp._tls.DOMAIN`:
    exactly one record beginning with "v=TLSRPTv1" (RFC 8460 §3: otherwise
    the domain does not take reports); `rua=` holds mailto: and https:
    URIs: a mailto: one gives a Destination per address, an https: one
    (with a host) a Destination with that `url` (the report is POSTed
    there: delivery/httpspost.py); any other URI is skipped and said.
  * Both return (destinations, notes): `notes` are the sentences an
    operator reads in the log (a skipped URI, an unauthorised destination,
    a DNS failure: tried again at the next report). A DNS failure of the
    policy record itself gives no destination and a note; the records stay
    for the next run only if the caller keeps them (it does not: a report
    is best effort).
  * `same_org` defaults to `same_tree`: the two names are equal or one is
    below the other. Without the Public Suffix List this is stricter than
    the organisational domain of RFC 7489 §3.2 (a sibling such as
    reports.example.com for mail.example.com asks for the authorisation
    record); the composition root may pass the inbound check's
    organisational-domain comparison instead.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from pigeon.dns.api import DnsError, NoData, NoSuchDomain, Resolver, TemporaryFailure

__all__ = [
    "Destination",
    "dmarc_destinations",
    "parse_size",
    "parse_tags",
    "same_tree",
    "tls_destinations",
]

SameOrg = Callable[[str, str], bool]

#: RFC 7489 §6.2: the unit of a size limit.
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZED = re.compile(r"^(?P<uri>.*?)(?:!(?P<size>\d+)(?P<unit>[kmgt]?))?$", re.I)


@dataclass(frozen=True, slots=True)
class Destination:
    """One mailbox a report goes to, with its size limit in octets (None: no limit)."""

    address: str  # "" for an https: destination
    max_size: int | None = None
    uri: str = ""  # as published, for the log
    url: str = ""  # TLS-RPT https: URI: the report is POSTed there instead of mailed


def same_tree(a: str, b: str) -> bool:
    """`a` and `b` are the same name, or one is below the other (module contract)."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def parse_tags(record: str) -> dict[str, str]:
    """The tag=value pairs of a DMARC or TLS-RPT record (RFC 7489 §6.4, RFC 8460 §3),
    tag names lowercased; the first of a repeated tag wins."""
    tags: dict[str, str] = {}
    for part in record.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            tags.setdefault(name.strip().lower(), value.strip())
    return tags


def parse_size(uri: str) -> tuple[str, int | None]:
    """(URI, limit in octets or None) of one rua= entry (RFC 7489 §6.2)."""
    found = _SIZED.match(uri.strip())
    assert found is not None  # the pattern matches every string
    if found.group("size") is None:
        return found.group("uri"), None
    return found.group("uri"), int(found.group("size")) * _UNITS[found.group("unit").lower()]


def _mailto(uri: str) -> list[str]:
    """The addresses of a mailto: URI (RFC 6068: %-encoded, several separated by commas)."""
    target = uri[len("mailto:") :].partition("?")[0]
    return [a for a in (urllib.parse.unquote(x).strip() for x in target.split(",")) if "@" in a]


def _one_record(records: list[str], version: str) -> str | None:
    """The one record beginning with `version`, or None when there is none or several."""
    found = [r for r in records if re.match(rf"v\s*=\s*{re.escape(version)}\s*(;|$)", r.strip())]
    return found[0] if len(found) == 1 else None


async def _txt(resolver: Resolver, name: str) -> list[str]:
    try:
        return await resolver.txt(name)
    except (NoSuchDomain, NoData):
        return []


async def dmarc_destinations(
    resolver: Resolver, domain: str, same_org: SameOrg = same_tree
) -> tuple[list[Destination], list[str]]:
    """The DMARC aggregate report destinations of `domain` (module contract)."""
    notes: list[str] = []
    try:
        record = _one_record(await _txt(resolver, f"_dmarc.{domain}"), "DMARC1")
    except DnsError as exc:
        return [], [f"DMARC record of {domain} not found ({exc}): no report this time"]
    if record is None:
        return [], [f"{domain} publishes no single DMARC record now: no report"]
    rua = parse_tags(record).get("rua", "")
    if not rua:
        return [], [f"{domain} asks for no aggregate reports (no rua=)"]
    out: list[Destination] = []
    for entry in rua.split(","):
        uri, size = parse_size(entry)
        if not uri.lower().startswith("mailto:"):
            notes.append(f"{domain}: rua {uri!r} skipped: only mailto: URIs are used")
            continue
        for address in _mailto(uri):
            target = address.rpartition("@")[2].lower()
            if not same_org(domain, target):
                allowed, why = await _authorised(resolver, domain, target)
                if not allowed:
                    notes.append(f"{domain}: rua {address} skipped: {why}")
                    continue
            out.append(Destination(address, size, entry.strip()))
    return out, notes


async def _authorised(resolver: Resolver, domain: str, target: str) -> tuple[bool, str]:
    """RFC 7489 §7.1: does `target` agree to receive the reports of `domain`?"""
    name = f"{domain}._report._dmarc.{target}"
    try:
        records = await _txt(resolver, name)
    except TemporaryFailure as exc:
        return False, f"authorisation record {name} not found ({exc})"
    if any(re.match(r"v\s*=\s*DMARC1\s*(;|$)", r.strip()) for r in records):
        return True, ""
    return False, f'external destination not authorised (no "v=DMARC1" TXT at {name})'


async def tls_destinations(resolver: Resolver, domain: str) -> tuple[list[Destination], list[str]]:
    """The TLS-RPT destinations of `domain` (module contract)."""
    try:
        record = _one_record(await _txt(resolver, f"_smtp._tls.{domain}"), "TLSRPTv1")
    except DnsError as exc:
        return [], [f"TLS-RPT record of {domain} not found ({exc}): no report this time"]
    if record is None:
        return [], [f"{domain} publishes no single TLS-RPT record: no report"]
    notes: list[str] = []
    out: list[Destination] = []
    for entry in parse_tags(record).get("rua", "").split(","):
        uri = entry.strip()
        if not uri:
            continue
        if uri.lower().startswith("https:") and urllib.parse.urlsplit(uri).hostname:
            out.append(Destination("", None, uri, url=uri))  # RFC 8460 §3: POSTed
            continue
        if not uri.lower().startswith("mailto:"):
            notes.append(f"{domain}: TLS-RPT rua {uri!r} skipped: neither mailto: nor https:")
            continue
        out.extend(Destination(a, None, uri) for a in _mailto(uri))
    if not out and not notes:
        notes.append(f"{domain}: TLS-RPT record has no rua=")
    return out, notes
