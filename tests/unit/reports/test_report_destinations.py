"""Where reports go: rua= of DMARC (RFC 7489 §6.2, §7.1) and TLS-RPT (RFC 8460 §3) records."""

from __future__ import annotations

import asyncio

import pytest

from pigeon.reports.destinations import (
    Destination,
    dmarc_destinations,
    parse_size,
    same_tree,
    tls_destinations,
)
from pigeon.testing.fakedns import FakeResolver

ZONES = {
    "example.org": """
_dmarc TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.org!10m,mailto:agg@reports.test, https://x.test/r"
""",
    "reports.test": """
example.org._report._dmarc TXT "v=DMARC1"
""",
    "noauth.test": """
_dmarc TXT "v=DMARC1; p=none; rua=mailto:agg@reports.test"
""",
    "two.test": """
_dmarc TXT "v=DMARC1; p=none; rua=mailto:a@two.test"
_dmarc TXT "v=DMARC1; p=reject; rua=mailto:b@two.test"
""",
    "sub.test": """
_dmarc.mail TXT "v=DMARC1; p=none; rua=mailto:dmarc%2Bagg@sub.test!500k"
_dmarc TXT "spf stuff, not dmarc"
""",
    "example.net": """
_smtp._tls TXT "v=TLSRPTv1; rua=mailto:tlsrpt@example.net,https://reports.example.net/tlsrpt"
""",
    "twotls.test": """
_smtp._tls TXT "v=TLSRPTv1; rua=mailto:a@twotls.test"
_smtp._tls TXT "v=TLSRPTv1; rua=mailto:b@twotls.test"
""",
}


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize(
    "entry, expected",
    [
        ("mailto:a@b.test", ("mailto:a@b.test", None)),
        ("mailto:a@b.test!100", ("mailto:a@b.test", 100)),
        ("mailto:a@b.test!10k", ("mailto:a@b.test", 10 * 1024)),
        ("mailto:a@b.test!10m", ("mailto:a@b.test", 10 * 1024 * 1024)),
        (" mailto:a@b.test!2G ", ("mailto:a@b.test", 2 * 1024**3)),
        ("mailto:a@b.test!1t", ("mailto:a@b.test", 1024**4)),
    ],
)
def test_size_limits(entry, expected):
    assert parse_size(entry) == expected


def test_same_tree():
    assert same_tree("example.org", "example.org")
    assert same_tree("example.org", "reports.example.org")
    assert same_tree("mail.example.org", "example.org.")
    assert not same_tree("example.org", "badexample.org")
    assert not same_tree("a.example.org", "b.example.org")


def test_dmarc_destinations_sizes_external_authorised_and_other_schemes():
    resolver = FakeResolver(ZONES)
    found, notes = run(dmarc_destinations(resolver, "example.org"))
    assert found == [
        Destination("dmarc@example.org", 10 * 1024 * 1024, "mailto:dmarc@example.org!10m"),
        Destination("agg@reports.test", None, "mailto:agg@reports.test"),
    ]
    assert ("example.org._report._dmarc.reports.test", "TXT") in resolver.queries
    assert notes == ["example.org: rua 'https://x.test/r' skipped: only mailto: URIs are used"]


def test_an_external_destination_without_authorisation_is_not_used():
    found, notes = run(dmarc_destinations(FakeResolver(ZONES), "noauth.test"))
    assert found == []
    assert len(notes) == 1
    assert "agg@reports.test skipped: external destination not authorised" in notes[0]
    assert "noauth.test._report._dmarc.reports.test" in notes[0]


def test_an_organisation_check_given_by_the_caller_is_used():
    found, _ = run(dmarc_destinations(FakeResolver(ZONES), "noauth.test", lambda a, b: True))
    assert [d.address for d in found] == ["agg@reports.test"]


def test_several_dmarc_records_or_none_give_no_destination():
    found, notes = run(dmarc_destinations(FakeResolver(ZONES), "two.test"))
    assert found == [] and "no single DMARC record" in notes[0]
    found, notes = run(dmarc_destinations(FakeResolver(ZONES), "sub.test"))
    assert found == [] and "no single DMARC record" in notes[0]
    found, notes = run(dmarc_destinations(FakeResolver(ZONES), "nowhere.test"))
    assert found == [] and notes


def test_percent_encoded_mailto_and_a_subdomain_record():
    found, notes = run(dmarc_destinations(FakeResolver(ZONES), "mail.sub.test"))
    assert found == [
        Destination("dmarc+agg@sub.test", 500 * 1024, "mailto:dmarc%2Bagg@sub.test!500k")
    ]
    assert notes == []


def test_a_dns_failure_gives_no_destination_and_says_so():
    resolver = FakeResolver(ZONES, servfail={"_dmarc.example.org"})
    found, notes = run(dmarc_destinations(resolver, "example.org"))
    assert found == [] and "not found" in notes[0]


def test_tls_destinations_mailto_and_https():
    found, notes = run(tls_destinations(FakeResolver(ZONES), "example.net"))
    assert [d.address for d in found if not d.url] == ["tlsrpt@example.net"]
    # RFC 8460 §3: an https: URI is POSTed to, not mailed.
    assert [d.url for d in found if d.url] == ["https://reports.example.net/tlsrpt"]
    assert notes == []


def test_tls_several_records_mean_none():
    found, notes = run(tls_destinations(FakeResolver(ZONES), "twotls.test"))
    assert found == [] and "no single TLS-RPT record" in notes[0]
