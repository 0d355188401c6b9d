"""SPF record syntax (RFC 7208 §4.5, §4.6, §12): select the record, parse it into terms.

    record = parse_record("v=spf1 ip4:192.0.2.0/24 include:_spf.example.org -all")
    record.directives[0]   # Directive("+", "ip4", "192.0.2.0", 24, None, "ip4:192.0.2.0/24")
    record.redirect        # None
    select_record(["v=spf1 -all", "google-site-verification=..."])   # "v=spf1 -all"

Contract:
  * `select_record` keeps the TXT records that start with "v=spf1" followed
    by a space or the end (case-insensitive, §4.5): none is `None`, more
    than one is `SpfSyntaxError` (permerror).
  * `parse_record` checks the WHOLE record before anything is evaluated
    (§4.6: a syntax error anywhere is a permerror, even after a matching
    mechanism): unknown mechanisms, a second "redirect" or "exp" (§6), a
    domain-spec that does not end in a top label or a macro (§7.1), CIDR
    lengths out of range or with leading zeros (§5.6), address literals
    that do not parse, and macro-strings that do not parse (macros.py) all
    raise `SpfSyntaxError`. Unknown modifiers are ignored
    (§6), but their value must still be a valid macro-string.
  * Pure: no DNS, no I/O. Domain-specs stay unexpanded (check.py expands
    them when the term is evaluated, with the macros of that moment).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

from pigeon.policy.spf.macros import SpfSyntaxError, check_macro_string

__all__ = ["Directive", "SpfRecord", "SpfSyntaxError", "parse_record", "select_record"]

VERSION = "v=spf1"
QUALIFIERS = "+-~?"
# §5: the mechanisms; which take a domain-spec, which need one.
DOMAIN_OPTIONAL = {"a", "mx", "ptr"}
DOMAIN_REQUIRED = {"include", "exists"}
MECHANISMS = {"all", "ip4", "ip6"} | DOMAIN_OPTIONAL | DOMAIN_REQUIRED

# §12: name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ), modifier = name "=" macro-string
_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)=(.*)", re.DOTALL)
_MECHANISM = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)(.*)", re.DOTALL)
# §12: ip4-cidr-length = "/" ("0" / %x31-39 0*1DIGIT); ip6 alike with up to three digits
_CIDR4 = r"(?:0|[1-9][0-9]?)"
_CIDR6 = r"(?:0|[1-9][0-9]{0,2})"
_DUAL_CIDR = re.compile(rf"(?P<domain>.*?)(?:/(?P<v4>{_CIDR4}))?(?://(?P<v6>{_CIDR6}))?")
# §7.1: toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
_ENDS_IN_MACRO = re.compile(r"(?:%\{[^}]*\}|%[%_-])$")
_TOPLABEL = re.compile(
    r"(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9\-]*[A-Za-z0-9])"
)


@dataclass(frozen=True, slots=True)
class Directive:
    """One mechanism with its qualifier (§4.6.2); `text` is the term as written."""

    qualifier: str  # "+", "-", "~" or "?"
    mechanism: str  # lowercase: "all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"
    argument: str | None  # the domain-spec (unexpanded) or the network address
    cidr4: int | None
    cidr6: int | None
    text: str


@dataclass(frozen=True, slots=True)
class SpfRecord:
    """A parsed record: directives in order, the two modifiers SPF defines (§6)."""

    directives: tuple[Directive, ...]
    redirect: str | None  # domain-spec, unexpanded
    exp: str | None  # domain-spec, unexpanded


def select_record(texts: list[str]) -> str | None:
    """The one SPF record among a name's TXT records (§4.5); several: `SpfSyntaxError`."""
    records = [t for t in texts if t.lower() == VERSION or t.lower().startswith(VERSION + " ")]
    if len(records) > 1:
        raise SpfSyntaxError(f"{len(records)} SPF records (RFC 7208 §4.5: exactly one)")
    return records[0] if records else None


@functools.lru_cache(maxsize=512)
def parse_record(text: str) -> SpfRecord:
    """The record's terms (§4.6.1, §12); any syntax error is `SpfSyntaxError`.

    Cached by the text: a domain's record is evaluated for each of its
    messages, and the `SpfRecord` is immutable (a syntax error is not
    cached, it is found again)."""
    if not (text.lower() == VERSION or text.lower().startswith(VERSION + " ")):
        raise SpfSyntaxError("the record does not start with v=spf1")
    directives: list[Directive] = []
    modifiers: dict[str, str] = {}
    # §12: terms are separated by one or more SP (only the space character).
    for term in text[len(VERSION) :].split(" "):
        if not term:
            continue
        modifier = _MODIFIER.fullmatch(term)
        if modifier:
            name, value = modifier.group(1).lower(), modifier.group(2)
            check_macro_string(value)
            if name in ("redirect", "exp"):
                if name in modifiers:
                    raise SpfSyntaxError(f"more than one {name}= modifier (RFC 7208 §6)")
                _check_domain_spec(value, term)
                modifiers[name] = value
            continue  # §6: unknown modifiers are ignored
        directives.append(_parse_directive(term))
    return SpfRecord(tuple(directives), modifiers.get("redirect"), modifiers.get("exp"))


def _parse_directive(term: str) -> Directive:
    qualifier, body = ("+", term)
    if term[0] in QUALIFIERS:
        qualifier, body = term[0], term[1:]
    match = _MECHANISM.fullmatch(body)
    name = match.group(1).lower() if match else ""
    if name not in MECHANISMS:
        raise SpfSyntaxError(f"unknown mechanism {term!r} (RFC 7208 §5)")
    rest = match.group(2) if match else ""
    if name == "all":
        if rest:
            raise SpfSyntaxError(f"{term!r}: all takes no argument (RFC 7208 §5.1)")
        return Directive(qualifier, name, None, None, None, term)
    if name in ("ip4", "ip6"):
        return _parse_network(qualifier, name, rest, term)
    argument: str | None = None
    cidr4 = cidr6 = None
    if name in DOMAIN_OPTIONAL:
        dual = _DUAL_CIDR.fullmatch(rest)
        assert dual is not None  # the lazy domain group matches anything
        rest = dual.group("domain")
        cidr4 = int(dual.group("v4")) if dual.group("v4") else None
        cidr6 = int(dual.group("v6")) if dual.group("v6") else None
        if (cidr4 is not None and cidr4 > 32) or (cidr6 is not None and cidr6 > 128):
            raise SpfSyntaxError(f"{term!r}: CIDR length out of range (RFC 7208 §5.6)")
        if name == "ptr" and (cidr4 is not None or cidr6 is not None):
            raise SpfSyntaxError(f"{term!r}: ptr takes no CIDR length (RFC 7208 §5.5)")
    if rest:
        if not rest.startswith(":"):
            raise SpfSyntaxError(f"{term!r}: expected ':' after {name} (RFC 7208 §12)")
        argument = rest[1:]
        check_macro_string(argument)
        _check_domain_spec(argument, term)
    elif name in DOMAIN_REQUIRED:
        raise SpfSyntaxError(f"{term!r}: {name} needs a domain (RFC 7208 §5)")
    return Directive(qualifier, name, argument, cidr4, cidr6, term)


def _parse_network(qualifier: str, name: str, rest: str, term: str) -> Directive:
    """ip4:network[/len] and ip6:network[/len] (§5.6)."""
    cidr_syntax = _CIDR4 if name == "ip4" else _CIDR6
    match = re.fullmatch(rf":([^/]+)(?:/({cidr_syntax}))?", rest)
    if not match:
        raise SpfSyntaxError(f"{term!r}: expected {name}:address[/length] (RFC 7208 §5.6)")
    address, length = match.group(1), match.group(2)
    try:
        parsed = ipaddress.IPv4Address(address) if name == "ip4" else ipaddress.IPv6Address(address)
    except ValueError:
        raise SpfSyntaxError(f"{term!r}: not an IP{name[-1]} address (RFC 7208 §5.6)") from None
    if parsed.version == 6 and "%" in address:
        raise SpfSyntaxError(f"{term!r}: a scoped address (RFC 7208 §5.6)")
    bits = int(length) if length else parsed.max_prefixlen
    if bits > parsed.max_prefixlen:
        raise SpfSyntaxError(f"{term!r}: CIDR length out of range (RFC 7208 §5.6)")
    if name == "ip4":
        return Directive(qualifier, name, str(parsed), bits, None, term)
    return Directive(qualifier, name, str(parsed), None, bits, term)


def _check_domain_spec(spec: str, term: str) -> None:
    """§7.1: domain-end = ( "." toplabel [ "." ] ) / macro-expand."""
    if _ENDS_IN_MACRO.search(spec):
        return  # check_macro_string has checked the macro's syntax
    _, dot, top = (spec[:-1] if spec.endswith(".") else spec).rpartition(".")
    if not dot or not _TOPLABEL.fullmatch(top):
        raise SpfSyntaxError(f"{term!r}: the domain does not end in a top label (RFC 7208 §7.1)")
