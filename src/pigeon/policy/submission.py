"""Submission rules about message content (RFC 6409 §8.1-style checks).

Contract:
  * `from_addresses(head)` returns the addresses of the From: field(s) in the
    header section at the start of `head` (bytes; only the header section is
    read, and at most what the caller passed), lowercased.
  * `check_from_header(head, owned)` is None when every From: address is one
    the authenticated account owns (or there is no From: at all: the
    envelope sender was already checked), else the 553 5.7.1 refusal.
  * Pure: no I/O. The SMTP driver reads the spool's first octets and asks.
"""
from __future__ import annotations

import email.parser
import email.policy
import email.utils

from pigeon.proto import reply as R
from pigeon.proto.reply import Reply


def from_addresses(head: bytes) -> list[str]:
    end = head.find(b"\r\n\r\n")
    block = head if end == -1 else head[:end + 2]
    msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(block)
    values = [str(v) for v in (msg.get_all("From") or [])]
    return [addr.lower() for _, addr in email.utils.getaddresses(values) if addr]


def check_from_header(head: bytes, owned: frozenset[str]) -> Reply | None:
    for address in from_addresses(head):
        if address not in owned:
            return R.FROM_NOT_OWNED
    return None
