"""What the receive checks and the delivery side hand to the aggregate reports.

Contract:
  * The DMARC check (inbound) makes one `DmarcRecord` per message it
    evaluated against a published DMARC policy, and gives it to the
    `ReportSink` it was built with; the SMTP client (outbound) makes one
    `TlsRecord` per delivery attempt to a domain (with or without a TLS
    policy: "no-policy-found") and gives it to its sink.
  * Records are plain frozen values; a sink must not block (it appends to a
    buffer or a local database) and never raises into the caller: reports
    are best effort, mail is not.
  * Where a record goes (which rua= address) is looked up when the report
    is made, not here: RFC 7489 §7.1 and RFC 8460 §3 name the current
    record of the domain as the authority.
  * `NullSink` is what a server without reports uses: it drops everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DkimAuth",
    "DmarcPublished",
    "DmarcRecord",
    "NullSink",
    "ReportSink",
    "SpfAuth",
    "TlsRecord",
]


@dataclass(frozen=True, slots=True)
class DmarcPublished:
    """The policy record as found (RFC 7489 §6.3; Appendix C `PolicyPublishedType`)."""

    domain: str  # the domain the record was found at (the From domain or its org domain)
    adkim: str  # "r" | "s"
    aspf: str  # "r" | "s"
    p: str  # "none" | "quarantine" | "reject"
    sp: str  # as p; p when the record has no sp=
    pct: int  # 0..100


@dataclass(frozen=True, slots=True)
class DkimAuth:
    """One DKIM signature's result (Appendix C `DKIMAuthResultType`)."""

    domain: str  # d=
    selector: str  # s=
    result: str  # none|pass|fail|policy|neutral|temperror|permerror


@dataclass(frozen=True, slots=True)
class SpfAuth:
    """The SPF result (Appendix C `SPFAuthResultType`)."""

    domain: str  # the MAIL FROM domain, or the HELO name when MAIL FROM was empty
    scope: str  # "mfrom" | "helo"
    result: str  # none|neutral|pass|fail|softfail|temperror|permerror


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    """One message evaluated against `published` (Appendix C `RecordType`, count 1)."""

    when: float  # Unix time the message was received
    source_ip: str
    header_from: str  # the RFC5322.From domain
    envelope_from: str  # the RFC5321.MailFrom domain ("" for the null sender)
    published: DmarcPublished
    disposition: str  # what we did: none|quarantine|reject
    dkim_aligned: bool  # policy_evaluated/dkim: pass when True
    spf_aligned: bool  # policy_evaluated/spf: pass when True
    dkim: tuple[DkimAuth, ...]
    spf: tuple[SpfAuth, ...]
    reason: str | None = None  # PolicyOverrideType: forwarded, sampled_out, trusted_forwarder,
    # mailing_list, local_policy, other; None when the policy was applied as published


@dataclass(frozen=True, slots=True)
class TlsRecord:
    """One delivery attempt's TLS outcome (RFC 8460 §4.3, §4.4)."""

    when: float
    policy_domain: str  # the recipient domain
    policy_type: str  # "sts" | "tlsa" | "no-policy-found"
    policy_strings: tuple[str, ...]  # the MTA-STS policy lines, or the TLSA records, as text
    mx_host: str
    receiving_ip: str
    success: bool
    result_type: str | None = None  # §4.3 result type when not success, e.g.
    # "certificate-host-mismatch", "starttls-not-supported", "validation-failure"
    additional_information: str = ""


class ReportSink(Protocol):
    """Takes records for the aggregate reports; never blocks, never raises."""

    def dmarc(self, record: DmarcRecord) -> None: ...

    def tls(self, record: TlsRecord) -> None: ...


class NullSink:
    """The sink of a server that sends no reports."""

    def dmarc(self, record: DmarcRecord) -> None:
        return None

    def tls(self, record: TlsRecord) -> None:
        return None
