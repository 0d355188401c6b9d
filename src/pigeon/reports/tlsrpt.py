"""TLS-RPT aggregate reports: delivery attempts grouped per policy, as the JSON of RFC 8460 §4.

Contract:
  * `group_tls(records, into=None)` -> {policy domain: [`TlsPolicyGroup`]}: the
    attempts to one recipient domain, per policy applied (type and policy
    strings: a domain whose MTA-STS policy changed during the period has two
    entries), with the count of successful sessions and the failures
    counted by (result type, receiving MX host name, receiving IP,
    additional information) (RFC 8460 §4.3).
  * `tls_report(meta, domain, groups)` -> the report as a dict with the
    field names of RFC 8460 §4.4: organization-name, date-range
    (start-datetime, end-datetime, RFC 3339 UTC), contact-info, report-id,
    policies: [{policy: {policy-type, policy-string, policy-domain,
    mx-host}, summary: {total-successful-session-count,
    total-failure-session-count}, failure-details: [{result-type,
    receiving-mx-hostname, receiving-ip, failed-session-count,
    additional-information}]}]. `mx-host` lists the "mx:" lines of an
    MTA-STS policy (§4.4) and is left out for other policy types; empty
    optional fields are left out. `sending-mta-ip` is left out: the
    records do not carry our own source address.
  * `tls_json(report)` -> the UTF-8 JSON bytes. Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pigeon.reports.dmarc import ReportMeta
from pigeon.reports.records import TlsRecord

__all__ = ["TlsFailure", "TlsPolicyGroup", "group_tls", "rfc3339", "tls_json", "tls_report"]


@dataclass(frozen=True, slots=True)
class TlsFailure:
    """What the failed sessions of one failure-details entry share (RFC 8460 §4.3)."""

    result_type: str
    mx_host: str
    receiving_ip: str
    additional_information: str


@dataclass(slots=True)
class TlsPolicyGroup:
    """The sessions under one policy of one domain."""

    policy_type: str
    policy_strings: tuple[str, ...]
    successes: int = 0
    failures: Counter[TlsFailure] = field(default_factory=Counter)

    @property
    def sessions(self) -> int:
        return self.successes + sum(self.failures.values())


def group_tls(
    records: Iterable[TlsRecord], into: dict[str, list[TlsPolicyGroup]] | None = None
) -> dict[str, list[TlsPolicyGroup]]:
    """The attempts counted per policy domain and policy (module contract), added to
    `into` when given (records read a page at a time)."""
    found: dict[str, list[TlsPolicyGroup]] = {} if into is None else into
    for record in records:
        domain = record.policy_domain.lower().rstrip(".")
        key = (record.policy_type, tuple(record.policy_strings))
        policies = found.setdefault(domain, [])
        # A domain has one policy, or a few when it changed during the period.
        group = next((g for g in policies if (g.policy_type, g.policy_strings) == key), None)
        if group is None:
            group = TlsPolicyGroup(*key)
            policies.append(group)
        if record.success:
            group.successes += 1
        else:
            failure = TlsFailure(
                record.result_type or "validation-failure",
                record.mx_host.lower().rstrip("."),
                record.receiving_ip,
                record.additional_information,
            )
            group.failures[failure] += 1
    return found


def rfc3339(when: int | float) -> str:
    """A Unix time as RFC 3339 date-time in UTC ("2016-04-01T00:00:00Z"; RFC 8460 §4.4)."""
    return datetime.fromtimestamp(int(when), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _policy(domain: str, group: TlsPolicyGroup) -> dict[str, Any]:
    policy: dict[str, Any] = {"policy-type": group.policy_type}
    if group.policy_strings:
        policy["policy-string"] = list(group.policy_strings)
    policy["policy-domain"] = domain
    if group.policy_type == "sts":
        # RFC 8460 §4.4: the MX patterns of the MTA-STS policy (RFC 8461 §3.2 "mx:").
        hosts = [
            line.partition(":")[2].strip()
            for line in group.policy_strings
            if line.partition(":")[0].strip().lower() == "mx"
        ]
        if hosts:
            policy["mx-host"] = hosts
    return policy


def _failure(failure: TlsFailure, count: int) -> dict[str, Any]:
    detail: dict[str, Any] = {"result-type": failure.result_type}
    if failure.mx_host:
        detail["receiving-mx-hostname"] = failure.mx_host
    if failure.receiving_ip:
        detail["receiving-ip"] = failure.receiving_ip
    detail["failed-session-count"] = count
    if failure.additional_information:
        detail["additional-information"] = failure.additional_information
    return detail


def tls_report(meta: ReportMeta, domain: str, groups: list[TlsPolicyGroup]) -> dict[str, Any]:
    """The report for one policy domain (module contract)."""
    report: dict[str, Any] = {
        "organization-name": meta.org_name,
        "date-range": {"start-datetime": rfc3339(meta.begin), "end-datetime": rfc3339(meta.end)},
        "contact-info": meta.contact or meta.email,
        "report-id": meta.report_id,
        "policies": [],
    }
    for group in groups:
        entry: dict[str, Any] = {
            "policy": _policy(domain, group),
            "summary": {
                "total-successful-session-count": group.successes,
                "total-failure-session-count": sum(group.failures.values()),
            },
        }
        if group.failures:
            entry["failure-details"] = [
                _failure(f, n) for f, n in sorted(group.failures.items(), key=lambda item: -item[1])
            ]
        report["policies"].append(entry)
    return report


def tls_json(report: dict[str, Any]) -> bytes:
    return json.dumps(report, indent=1, ensure_ascii=False).encode("utf-8") + b"\n"
