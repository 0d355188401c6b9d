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
    SMTP (HELO), ESMTP (EHLO), UTF8SMTP (EHLO + SMTPUTF8, RFC 6531 §3.7.3).
    ESMTPS/ESMTPA arrive with TLS and AUTH.
"""
from __future__ import annotations

import email.utils
import ipaddress
from datetime import datetime, timezone


def transmission_type(esmtp: bool, smtputf8: bool) -> str:
    if not esmtp:
        return "SMTP"
    return "UTF8SMTP" if smtputf8 else "ESMTP"


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
    return "".join(ch if ch.isprintable() and ch not in "()\\" else "?" for ch in text)[:255]


def received_header(*, helo: str, client_ip: str, hostname: str, protocol: str,
                    queue_id: str, recipients: list[str], timestamp: float) -> bytes:
    """Build the Received: field for a message accepted over SMTP."""
    # "+0000", not "-0000": RFC 5322 §3.3 gives -0000 the meaning "zone unknown".
    date = email.utils.format_datetime(datetime.fromtimestamp(timestamp, timezone.utc))
    lines = [f"Received: from {_clean(helo) or 'unknown'} ({_address_literal(client_ip)})",
             f"\tby {hostname} (pigeon) with {protocol} id {queue_id}"]
    if len(recipients) == 1:
        lines.append(f"\tfor <{_clean(recipients[0])}>; {date}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{date}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
