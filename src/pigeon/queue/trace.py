"""Trace fields: the Received: header pigeon prepends to every message.

Contract:
  * `received_header(...)` returns the complete header field as bytes, folded
    with CRLF + TAB, ending in CRLF, ready to be the first bytes of the spool
    file. It is pure: the date is passed in.
  * RFC 5321 §4.4: a Received: line with FROM (the EHLO name and the TCP
    address literal), BY (our host name), WITH (the protocol), ID (our queue
    ID) and FOR (only with a single recipient, as Postfix does, so Bcc
    recipients of a multi-recipient message are not disclosed), then "; " and
    the date-time (RFC 5322 §3.6.7).
  * WITH values come from the IANA "Mail Transmission Types" registry:
    SMTP (HELO), ESMTP (EHLO), UTF8SMTP (EHLO + SMTPUTF8, RFC 6531 §3.7.3),
    with "S" appended under TLS and "A" after AUTH (ESMTPS, ESMTPA, ESMTPSA,
    RFC 3848; UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA, RFC 6531 §3.7.3).
  * Under TLS the protocol version and cipher suite follow in a comment after
    the WITH value, as RFC 8314 §4.3 asks and in Postfix's form:
    "with ESMTPSA (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256 bits))".
    The authenticated user name is not written (privacy; Postfix's default).
"""

from __future__ import annotations

import email.utils
import functools
import ipaddress
from datetime import UTC, datetime


def transmission_type(esmtp: bool, smtputf8: bool, *, tls: bool = False, auth: bool = False) -> str:
    if not esmtp:
        return "SMTP"  # the registry has no SMTPS/SMTPA: TLS and AUTH need EHLO
    base = "UTF8SMTP" if smtputf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if auth else "")


def _tls_comment(tls) -> str:
    # `tls` is a pigeon.proto.events.TlsInfo (version, cipher, bits) or None.
    if tls is None:
        return ""
    return f" (using {_clean(tls.version)} with cipher {_clean(tls.cipher)} ({int(tls.bits)} bits))"


# Cached: a client sends many messages, and parsing the address cost more
# than the rest of the field (profile of issue 16, docs/benchmarks.md).
@functools.lru_cache(maxsize=4096)
def _address_literal(ip: str) -> str:
    # RFC 5321 §4.1.3: IPv6 literals carry the "IPv6:" tag.
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return f"[{ip}]" if ip else "[unknown]"
    if parsed.version == 6:
        mapped = parsed.ipv4_mapped
        return f"[{mapped}]" if mapped else f"[IPv6:{parsed.compressed}]"
    return f"[{parsed}]"


def _clean(text: str) -> str:
    # The HELO name is client-controlled: keep it on one line and printable
    # so it cannot inject header fields (RFC 5322 §2.2 header field body).
    if text.isprintable() and "(" not in text and ")" not in text and "\\" not in text:
        return text[:255]  # the usual case, without a generator over every character
    return "".join(ch if ch.isprintable() and ch not in "()\\" else "?" for ch in text)[:255]


@functools.lru_cache(maxsize=4)
def _date(second: int) -> str:
    """RFC 5322 §3.3 date-time of a whole second (the field has no fraction)."""
    # "+0000", not "-0000": RFC 5322 §3.3 gives -0000 the meaning "zone unknown".
    return email.utils.format_datetime(datetime.fromtimestamp(second, UTC))


def received_header(
    *,
    helo: str,
    client_ip: str,
    hostname: str,
    protocol: str,
    queue_id: str,
    recipients: list[str],
    timestamp: float,
    tls: object = None,
) -> bytes:
    """Build the Received: field for a message accepted over SMTP."""
    date = _date(int(timestamp))
    lines = [
        f"Received: from {_clean(helo) or 'unknown'} ({_address_literal(client_ip)})",
        f"\tby {hostname} (pigeon) with {protocol}{_tls_comment(tls)} id {queue_id}",
    ]
    if len(recipients) == 1:
        lines.append(f"\tfor <{_clean(recipients[0])}>; {date}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{date}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
