"""The schema of [tls_policy]: outbound TLS policies (MTA-STS, DANE) and our own MTA-STS policy.

Contract: like `pigeon.config.schema` (which holds this as `Config.tls_policy`):
a frozen dataclass, one documented field each, the TOML key, default and
unit in its comment; docs/config.md agrees. The checks of the values are
`pigeon.config._tlspolicy`; what the keys do is `pigeon.delivery.tlspolicy`
(outbound) and `pigeon.delivery.tlspolicy.own` (the policy file we publish).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: RFC 8461 §3.2: max_age is at most 31557600 seconds (about a year).
MAX_AGE_LIMIT = 31_557_600


@dataclass(frozen=True, slots=True)
class TlsPolicyConfig:
    """[tls_policy]: which TLS the SMTP client demands of each recipient domain."""

    mta_sts: bool = True  # [tls_policy] mta_sts: discover and apply recipient domains' MTA-STS policies (RFC 8461)
    dane: bool = True  # [tls_policy] dane: apply DANE (RFC 7672) where the resolver returns DNSSEC-validated TLSA records
    ca_file: Path | None = (
        None  # [tls_policy] ca_file: PEM CA certificates trusted for MTA-STS (the policy fetch and the MX certificates) and for TLS-RPT reports posted over HTTPS; None = the system's
    )
    fetch_timeout: float = 10.0  # [tls_policy] fetch_timeout, s: one MTA-STS policy fetch (connect, TLS, request, body) at most; > 0
    own_mode: Literal["enforce", "testing", "none"] = (
        "testing"  # [tls_policy] own_mode: mode of the policy `pigeon mta-sts policy` writes for our domains
    )
    own_mx: tuple[
        str, ...
    ] = ()  # [tls_policy] own_mx: mx: lines of our policy (names or "*.example.org"); () = `hostname`
    own_max_age: int = (
        604_800  # [tls_policy] own_max_age, s: max_age of our policy (1 week); 1..31557600
    )
