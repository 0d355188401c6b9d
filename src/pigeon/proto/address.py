"""Mailbox addresses as SMTP carries them (RFC 5321 §4.1.2, RFC 6531 §3.3).

Contract:
  * `Address` holds a *decoded* local part (quotes and quoted-pair escapes
    removed) and a domain that is either a domain name (lowercased when
    ASCII) or an address literal such as "[192.0.2.1]" / "[IPv6:2001:db8::1]".
  * `<postmaster>` (RFC 5321 §4.5.1) is Address("postmaster", "").
  * `str(address)` gives the canonical form: the local part re-quoted when it
    is not a valid dot-string, then "@domain" (no "@" for bare postmaster).
  * Parsing lives in `parse_path()`; it never raises anything but `PathError`.

TODO(H1): parse_path and helpers are filled in by the protocol-core work.
"""
from __future__ import annotations

from dataclasses import dataclass


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

    def __str__(self) -> str:  # replaced by the full implementation (quoting)
        return f"{self.local}@{self.domain}" if self.domain else self.local


class PathError(ValueError):
    """A reverse-path or forward-path that does not follow the grammar."""
