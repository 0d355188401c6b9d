"""The `[reports]` section's values (checked by pigeon.config._reports; docs/config.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReportsConfig:
    """[reports]: aggregate DMARC (RFC 7489 §7.2) and TLS-RPT (RFC 8460) reports (pigeon.reports)."""

    dmarc: bool = False  # [reports] dmarc: collect DMARC results and send daily aggregate reports
    tls: bool = False  # [reports] tls: collect delivery TLS outcomes and send daily TLS-RPT reports
    #: [reports] from: the reports' From: and envelope sender; "" = noreply-reports@`hostname`.
    #: (The TOML key is `from`, a Python keyword: pigeon.config._reports.)
    sender: str = ""
    org_name: str = ""  # [reports] org_name: the reporting organisation; "" = `hostname`
    contact: str = ""  # [reports] contact: extra contact information (a URI or address); "" = none
    #: [reports] interval, s: length of a reporting period; periods end on
    #: multiples of it since the Unix epoch (86400: at 00:00 UTC); >= 1.
    interval: float = 86400.0

    @property
    def enabled(self) -> bool:
        return self.dmarc or self.tls

    def from_address(self, hostname: str) -> str:
        return self.sender or f"noreply-reports@{hostname}"
