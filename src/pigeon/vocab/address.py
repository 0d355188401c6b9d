"""Mailbox addresses as SMTP carries them (RFC 5321 §4.1.2, RFC 6531 §3.3).

Contract:
  * `Address` holds a *decoded* local part (quotes and quoted-pair escapes
    removed) and a domain that is either a domain name (lowercased) or an
    address literal such as "[192.0.2.1]" / "[IPv6:2001:db8::1]" /
    "[tag:content]".
  * `<postmaster>` (RFC 5321 §4.5.1) is Address("postmaster", "").
  * `str(address)` gives the canonical form: the local part re-quoted when it
    is not a valid dot-string, then "@domain" (no "@" for bare postmaster).
    Rule: `parse_path("<" + str(a) + ">", ...) == a` for every parsed `a`.
  * `split_path(arg)` separates the path from the ESMTP parameters of a
    MAIL/RCPT argument; `parse_path(text, ...)` parses the path itself.
  * Parsing never raises anything but `PathError` (and its subclass
    `NonAsciiAddressError`, raised when UTF-8 appears without SMTPUTF8).

Accepted beyond the strict grammar, like Postfix: a path without angle
brackets (`MAIL FROM:user@example.com`); source routes `<@a,@b:u@c>` are
accepted and dropped (RFC 5321 §4.1.2 says they MUST be accepted and SHOULD
be ignored, Appendix C).

Length limits (RFC 5321 §4.5.3.1): local part 64 octets, domain 255 octets,
whole path 256 octets, all counted on the wire form (UTF-8).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

MAX_LOCAL = 64  # RFC 5321 §4.5.3.1.1
MAX_DOMAIN = 255  # RFC 5321 §4.5.3.1.2
MAX_PATH = 256  # RFC 5321 §4.5.3.1.3

# atext (RFC 5322 §3.2.3) as RFC 5321 uses it; RFC 6531 §3.3 adds UTF8-non-ascii.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_DOT_STRING_ASCII = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_DOT_STRING_UTF8 = re.compile(rf"[{_ATEXT}\u0080-\U0010ffff]+(?:\.[{_ATEXT}\u0080-\U0010ffff]+)*")
# Quoted-string (RFC 5321 §4.1.2): qtextSMTP = %d32-33 / %d35-91 / %d93-126,
# quoted-pairSMTP = "\" %d32-126; RFC 6531 adds UTF8-non-ascii to qtextSMTP.
_QUOTED_ASCII = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*)"')
_QUOTED_UTF8 = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*)"')
_UNESCAPE = re.compile(r"\\(.)")
# sub-domain = Let-dig [Ldh-str] (RFC 5321 §4.1.2)
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_LDH_TAG = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
# dcontent = %d33-90 / %d94-126 (General-address-literal, RFC 5321 §4.1.3)
_DCONTENT = re.compile(r"[\x21-\x5a\x5e-\x7e]+")
_IPV4_SHAPE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
# A path in angle brackets; a quoted local part may hold ">" or spaces.
_BRACKETED = re.compile(r'<(?:[^">]|"(?:[^"\\]|\\.)*")*>')


class PathError(ValueError):
    """A reverse-path or forward-path that does not follow the grammar."""


class NonAsciiAddressError(PathError):
    """A path holds non-ASCII characters but SMTPUTF8 was not requested."""


@dataclass(frozen=True, slots=True)
class Address:
    local: str
    domain: str

    @property
    def is_postmaster(self) -> bool:
        return self.local.lower() == "postmaster"

    @property
    def needs_smtputf8(self) -> bool:
        return not (self.local.isascii() and self.domain.isascii())

    def __str__(self) -> str:
        local = self.local
        if not _DOT_STRING_UTF8.fullmatch(local):
            local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{local}@{self.domain}" if self.domain else local


def split_path(arg: str) -> tuple[str, str]:
    """Split a MAIL FROM:/RCPT TO: argument (text after the colon) into
    (path, parameter text). Leading spaces are tolerated (Postfix does).

    A bracketed path ends at the first ">" outside a quoted string; an
    unbracketed one at the first space. Raises PathError when a bracket is
    not closed or the path is not followed by a space or the end.
    """
    arg = arg.lstrip(" ")
    if arg.startswith("<"):
        m = _BRACKETED.match(arg)
        if m is None:
            raise PathError("unterminated <path>")
        path, rest = arg[: m.end()], arg[m.end() :]
    else:
        path, _, rest = arg.partition(" ")
        rest = " " + rest if rest else ""
    if rest and not rest.startswith(" "):
        raise PathError("garbage after path")
    return path, rest.strip(" ")


def parse_path(text: str, *, allow_null: bool, smtputf8: bool) -> Address | None:
    """Parse a Reverse-path/Forward-path (RFC 5321 §4.1.2).

    `text` is the path with its angle brackets (or, leniently, a bare
    mailbox). Returns None for the null path "<>" (only when `allow_null`).
    """
    if not text.isascii() and not smtputf8:
        raise NonAsciiAddressError("non-ASCII path without SMTPUTF8")  # RFC 6531 §3.4
    if len(text.encode("utf-8")) > MAX_PATH:
        raise PathError("path too long")
    if text.startswith("<"):
        if not text.endswith(">") or len(text) < 2:
            raise PathError("missing >")
        inner = text[1:-1]
    else:
        inner = text
    if inner == "":
        if allow_null and text == "<>":
            return None
        raise PathError("empty path")
    if inner.lower() == "postmaster":  # RFC 5321 §4.1.1.3
        return Address("postmaster", "")
    if inner.startswith("@"):  # A-d-l ":" Mailbox; the route is ignored (§4.1.2)
        route, colon, inner = inner.partition(":")
        if not colon:
            raise PathError("source route without ':'")
        for hop in route.split(","):
            if not hop.startswith("@"):
                raise PathError("bad source route")
            _parse_domain(hop[1:], smtputf8)
    return _parse_mailbox(inner, smtputf8)


def _parse_mailbox(text: str, smtputf8: bool) -> Address:
    if text.startswith('"'):
        m = (_QUOTED_UTF8 if smtputf8 else _QUOTED_ASCII).match(text)
        if m is None:
            raise PathError("bad quoted local part")
        raw_local = m.group(0)
        local = _UNESCAPE.sub(r"\1", m.group(1))
        rest = text[m.end() :]
    else:
        raw_local, at, _ = text.partition("@")
        if not at:
            raise PathError("no @ in mailbox")
        if not (_DOT_STRING_UTF8 if smtputf8 else _DOT_STRING_ASCII).fullmatch(raw_local):
            raise PathError("bad local part")
        local = raw_local
        rest = text[len(raw_local) :]
    if not rest.startswith("@"):
        raise PathError("no @ after local part")
    if len(raw_local.encode("utf-8")) > MAX_LOCAL:
        raise PathError("local part too long")
    return Address(local, _parse_domain(rest[1:], smtputf8))


def _parse_domain(text: str, smtputf8: bool) -> str:
    """Return the normalised domain (lowercased name, or literal) or raise."""
    if len(text.encode("utf-8")) > MAX_DOMAIN:
        raise PathError("domain too long")
    if text.startswith("["):
        return _parse_literal(text)
    if not text:
        raise PathError("empty domain")
    for label in text.split("."):
        if _LABEL.fullmatch(label):
            continue
        if smtputf8 and not label.isascii() and _is_u_label(label):
            continue
        raise PathError("bad domain label")
    return text.lower()


def _is_u_label(label: str) -> bool:
    # A lightweight U-label check (RFC 5890 §2.3.2.1): letters/digits/hyphen,
    # no leading/trailing hyphen, fits in 63 octets once punycode-encoded.
    if label.startswith("-") or label.endswith("-"):
        return False
    if not all(c.isalnum() or c == "-" for c in label):
        return False
    try:
        return len(b"xn--" + label.lower().encode("punycode")) <= 63
    except UnicodeError:
        return False


def _parse_literal(text: str) -> str:
    """address-literal (RFC 5321 §4.1.3): IPv4, "IPv6:" or General."""
    if not text.endswith("]") or len(text) < 3:
        raise PathError("bad address literal")
    body = text[1:-1]
    if _IPV4_SHAPE.fullmatch(body):
        try:
            ipaddress.IPv4Address(body)
        except ValueError:
            raise PathError("bad IPv4 literal") from None
        return text
    tag, colon, content = body.partition(":")
    if not colon or not _LDH_TAG.fullmatch(tag):
        raise PathError("bad address literal")
    if tag.lower() == "ipv6":
        if "%" in content:
            raise PathError("bad IPv6 literal")
        try:
            ipaddress.IPv6Address(content)
        except ValueError:
            raise PathError("bad IPv6 literal") from None
        return f"[IPv6:{content.lower()}]"
    if not _DCONTENT.fullmatch(content):
        raise PathError("bad general address literal")
    return text
