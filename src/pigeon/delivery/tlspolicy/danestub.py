"""STAND-IN for `pigeon.delivery.tlspolicy.dane` (DANE for SMTP, RFC 7672), until it lands.

The policy framework (`tlspolicy.policy`) calls exactly the two functions the
real module provides, with the same signatures; this stand-in says "no usable
TLSA records" for every host, so DANE never applies (RFC 7672 §2.2: without
DNSSEC-validated TLSA records DANE does not apply, which is the truth for a
resolver that does not validate). Replace the import in `tlspolicy/policy.py`
by the real module and delete this file.
"""

from __future__ import annotations

from dataclasses import dataclass

from pigeon.dns.api import Resolver

__all__ = ["DaneLookup", "dane_lookup", "dane_verify"]


@dataclass(frozen=True, slots=True)
class DaneLookup:
    """The usable TLSA records of one MX host (the real one: tlspolicy/dane.py)."""

    records: tuple[str, ...] = ()


async def dane_lookup(resolver: Resolver, mx_host: str, port: int) -> DaneLookup | None:
    """STAND-IN: no usable TLSA records anywhere (see the module docstring)."""
    return None


def dane_verify(lookup: DaneLookup, chain_der: list[bytes]) -> str | None:
    """STAND-IN: never reached (dane_lookup returns None); refuses if it were."""
    return "DANE verification is not available in this build"
