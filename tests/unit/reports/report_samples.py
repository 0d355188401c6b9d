"""Records the report tests share."""

from __future__ import annotations

from pigeon.reports.records import DkimAuth, DmarcPublished, DmarcRecord, SpfAuth, TlsRecord

PUBLISHED = DmarcPublished("example.org", "r", "s", "reject", "quarantine", 100)


def dmarc(
    source_ip: str = "192.0.2.1",
    *,
    when: float = 1_000_000.0,
    disposition: str = "none",
    dkim_aligned: bool = True,
    spf_aligned: bool = True,
    domain: str = "example.org",
    envelope_from: str = "example.org",
    reason: str | None = None,
    published: DmarcPublished = PUBLISHED,
) -> DmarcRecord:
    if domain != published.domain:
        published = DmarcPublished(domain, "r", "r", "none", "none", 100)
    return DmarcRecord(
        when=when,
        source_ip=source_ip,
        header_from=domain,
        envelope_from=envelope_from,
        published=published,
        disposition=disposition,
        dkim_aligned=dkim_aligned,
        spf_aligned=spf_aligned,
        dkim=(DkimAuth(domain, "sel1", "pass" if dkim_aligned else "fail"),),
        spf=(SpfAuth(envelope_from, "mfrom", "pass" if spf_aligned else "fail"),),
        reason=reason,
    )


STS = (
    "version: STSv1",
    "mode: enforce",
    "mx: mx1.example.net",
    "mx: *.example.net",
    "max_age: 86400",
)


def tls(
    success: bool = True,
    *,
    domain: str = "example.net",
    result_type: str | None = None,
    mx: str = "mx1.example.net",
    ip: str = "198.51.100.7",
    when: float = 1_000_000.0,
    policy_type: str = "sts",
    info: str = "",
) -> TlsRecord:
    return TlsRecord(
        when=when,
        policy_domain=domain,
        policy_type=policy_type,
        policy_strings=STS if policy_type == "sts" else (),
        mx_host=mx,
        receiving_ip=ip,
        success=success,
        result_type=result_type,
        additional_information=info,
    )
