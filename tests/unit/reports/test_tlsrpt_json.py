"""TLS-RPT reports: sessions counted per policy, and the JSON fields of RFC 8460 §4.4."""

from __future__ import annotations

import json

from report_samples import STS, tls

from pigeon.reports.dmarc import ReportMeta
from pigeon.reports.tlsrpt import group_tls, rfc3339, tls_json, tls_report

META = ReportMeta("Example Sender", "noreply@tx.test", "", "T1", 1459468800, 1459555200)


def test_sessions_are_counted_per_domain_and_policy_with_failures_grouped():
    records = [
        tls(),
        tls(),
        tls(False, result_type="certificate-expired"),
        tls(False, result_type="certificate-expired"),
        tls(False, result_type="starttls-not-supported", mx="mx2.example.net", ip="198.51.100.8"),
        tls(policy_type="no-policy-found"),
        tls(domain="other.test", policy_type="no-policy-found"),
    ]
    groups = group_tls(records)
    assert set(groups) == {"example.net", "other.test"}
    sts, none = groups["example.net"]
    assert (sts.policy_type, sts.successes, sts.sessions) == ("sts", 2, 5)
    assert sorted(sts.failures.values()) == [1, 2]
    assert (none.policy_type, none.successes, none.sessions) == ("no-policy-found", 1, 1)


def test_report_has_the_rfc_8460_fields():
    records = [
        tls(),
        tls(),
        tls(False, result_type="certificate-expired", info="expired 2016-03-01"),
    ]
    report = json.loads(
        tls_json(tls_report(META, "example.net", group_tls(records)["example.net"]))
    )
    assert list(report) == [
        "organization-name",
        "date-range",
        "contact-info",
        "report-id",
        "policies",
    ]
    assert report["date-range"] == {
        "start-datetime": "2016-04-01T00:00:00Z",
        "end-datetime": "2016-04-02T00:00:00Z",
    }
    assert report["contact-info"] == "noreply@tx.test"  # no contact: the From address
    (policy,) = report["policies"]
    assert policy["policy"] == {
        "policy-type": "sts",
        "policy-string": list(STS),
        "policy-domain": "example.net",
        "mx-host": ["mx1.example.net", "*.example.net"],
    }
    assert policy["summary"] == {
        "total-successful-session-count": 2,
        "total-failure-session-count": 1,
    }
    assert policy["failure-details"] == [
        {
            "result-type": "certificate-expired",
            "receiving-mx-hostname": "mx1.example.net",
            "receiving-ip": "198.51.100.7",
            "failed-session-count": 1,
            "additional-information": "expired 2016-03-01",
        }
    ]


def test_no_policy_found_has_no_policy_string_and_no_failure_details_when_all_passed():
    records = [tls(policy_type="no-policy-found")]
    report = tls_report(META, "example.net", group_tls(records)["example.net"])
    (policy,) = report["policies"]
    assert policy["policy"] == {"policy-type": "no-policy-found", "policy-domain": "example.net"}
    assert "failure-details" not in policy


def test_rfc3339_is_utc():
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1459468800.7) == "2016-04-01T00:00:00Z"
