"""delivery/tlspolicy/policy.py and apply.py: which policy applies to an MX host, the
stricter wins, and what connecting under a plan does with a TLS failure."""

from __future__ import annotations

import asyncio
import types

import pytest

from pigeon.config.tlspolicy import TlsPolicyConfig
from pigeon.delivery.smtpc import ConnectError
from pigeon.delivery.tlspolicy import policy as policy_module
from pigeon.delivery.tlspolicy.apply import connect_under
from pigeon.delivery.tlspolicy.policy import CandidatePlan, DomainPolicy, TlsPolicies
from pigeon.delivery.tlspolicy.sts import parse_policy
from pigeon.dns.api import TemporaryFailure
from pigeon.proto.reply import reply
from pigeon.routing.mx import Candidate
from pigeon.testing.fakedns import FakeResolver
from pigeon.vocab import Nexthop

MX = Candidate("mx.example.test", "192.0.2.1", 25, 10)
OTHER = Candidate("mx.elsewhere.test", "192.0.2.2", 25, 20)


def sts(mode: str, mx: str = "mx.example.test"):
    return parse_policy(f"version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: 86400\n")


def domain_policy(sts_policy=None, *, applies=True, mx_secure=True, **config) -> DomainPolicy:
    """`mx_secure`: the domain's MX RRset was validated (RFC 7672 §2.2.1: DANE may apply)."""
    owner = TlsPolicies(
        FakeResolver(),
        TlsPolicyConfig(ca_file=None, **config),
        base_mode="may",
        cache_dir=None,
    )
    return DomainPolicy(owner, "example.test", sts_policy, applies=applies, mx_secure=mx_secure)


def plan(dp: DomainPolicy, cand: Candidate = MX) -> CandidatePlan:
    return asyncio.run(dp.plan(cand))


def test_no_policy_is_opportunistic_delivery_tls():
    p = plan(domain_policy())
    assert (p.label, p.mode, p.required, p.policy_type) == ("none", "may", False, "no-policy-found")


def test_a_smarthost_or_transport_host_gets_no_policy():
    policies = TlsPolicies.off("may")
    dp = asyncio.run(policies.for_nexthop(Nexthop("smtp", "example.test", host="relay.test")))
    assert plan(dp).label == ""


def test_enforce_verifies_the_certificate_of_a_listed_mx():
    p = plan(domain_policy(sts("enforce")))
    assert (p.label, p.mode, p.required, p.refusal) == ("mta-sts:enforce", "verify", True, "")
    assert p.policy_type == "sts" and "mode: enforce" in p.policy_strings


def test_enforce_refuses_an_mx_not_in_the_policy():
    p = plan(domain_policy(sts("enforce")), OTHER)
    assert p.required and "mx.elsewhere.test is not allowed by the MTA-STS policy" in p.refusal


def test_testing_mode_is_not_enforced():
    p = plan(domain_policy(sts("testing")), OTHER)
    assert p.label == "mta-sts:testing" and p.refusal and not p.required and p.fallback == "may"


def test_mode_none_is_no_policy():
    assert plan(domain_policy(sts("none"))).label == "none"


def fake_dane(monkeypatch, lookup=None, error=None, verdict=None):
    """H5's tlspolicy.dane seam, with answers chosen by the test."""

    async def dane_lookup(resolver, mx_host, port):
        if error:
            raise error
        return lookup

    def dane_verify(found, chain):
        return verdict

    monkeypatch.setattr(
        policy_module,
        "dane",
        types.SimpleNamespace(dane_lookup=dane_lookup, dane_verify=dane_verify),
    )


def test_dane_wins_over_mta_sts_where_tlsa_records_are_validated(monkeypatch):
    lookup = types.SimpleNamespace(records=("3 1 1 abcd",), mandatory_only=False)
    fake_dane(monkeypatch, lookup=lookup, verdict="no TLSA record matches")
    p = plan(domain_policy(sts("enforce")))
    assert (p.label, p.mode, p.policy_type, p.policy_strings) == (
        "dane",
        "dane",
        "tlsa",
        ("3 1 1 abcd",),
    )
    assert p.check is not None and p.check([b"leaf"]) == "no TLSA record matches"


def test_dane_off_leaves_mta_sts(monkeypatch):
    fake_dane(monkeypatch, lookup=types.SimpleNamespace(records=()))
    assert plan(domain_policy(sts("enforce"), dane=False)).label == "mta-sts:enforce"


def test_a_failed_tlsa_lookup_makes_the_host_unusable(monkeypatch):
    fake_dane(monkeypatch, error=TemporaryFailure("_25._tcp.mx.example.test", "TLSA", "SERVFAIL"))
    p = plan(domain_policy(sts("enforce")))
    assert p.label == "dane" and p.required and "TLSA look-up" in p.refusal


def test_no_tlsa_records_so_mta_sts_applies():
    # The real tlspolicy.dane over an empty resolver: no TLSA records anywhere.
    assert plan(domain_policy(sts("enforce"))).label == "mta-sts:enforce"


def test_insecure_mx_rrset_skips_dane(monkeypatch):
    fake_dane(monkeypatch, lookup=types.SimpleNamespace(records=("3 1 1 abcd",)))
    assert plan(domain_policy(sts("enforce"), mx_secure=False)).label == "mta-sts:enforce"


# --- connecting under a plan --------------------------------------------------------------


class Sink:
    def __init__(self):
        self.records = []

    def dmarc(self, record):
        pass

    def tls(self, record):
        self.records.append(record)


def tls_failure(result="certificate-not-trusted"):
    r = reply(421, "4.7.5", "Cannot start TLS: handshake failure: certificate verify failed")
    return ConnectError(
        r, r.text, local=True, remote_mta="mx[192.0.2.1]:25", tls_failed=True, tls_result=result
    )


def test_an_enforced_tls_failure_is_a_4_7_deferral_naming_the_policy_and_is_reported():
    modes = []

    async def opener(mode, ca_file, check):
        modes.append(mode)
        raise tls_failure()

    sink = Sink()
    p = plan(domain_policy(sts("enforce")))
    with pytest.raises(ConnectError) as info:
        asyncio.run(connect_under(p, MX, opener, sink))
    exc = info.value
    assert modes == ["verify"]  # never tried again in clear
    assert exc.reply.enhanced == "4.7.5" and exc.tls_policy == "mta-sts:enforce"
    assert exc.diagnostic.startswith("TLS required for example.test (MTA-STS policy, enforce):")
    (rec,) = sink.records
    assert (rec.success, rec.result_type, rec.policy_type) == (
        False,
        "certificate-not-trusted",
        "sts",
    )


def test_a_refused_mx_opens_nothing():
    async def opener(mode, ca_file, check):
        raise AssertionError("must not connect")

    sink = Sink()
    with pytest.raises(ConnectError, match="not allowed by the MTA-STS policy"):
        asyncio.run(connect_under(plan(domain_policy(sts("enforce")), OTHER), OTHER, opener, sink))
    assert [r.result_type for r in sink.records] == ["validation-failure"]


def test_testing_mode_reports_the_failure_then_connects_as_without_the_policy():
    modes = []
    conn = types.SimpleNamespace(tls=None)

    async def opener(mode, ca_file, check):
        modes.append(mode)
        if mode == "verify":
            raise tls_failure("certificate-host-mismatch")
        return conn

    sink = Sink()
    got = asyncio.run(connect_under(plan(domain_policy(sts("testing"))), MX, opener, sink))
    assert got is conn and modes == ["verify", "may"]
    assert [(r.success, r.result_type) for r in sink.records] == [
        (False, "certificate-host-mismatch")
    ]


def test_a_failure_that_is_not_tls_is_raised_unchanged_and_not_reported():
    async def opener(mode, ca_file, check):
        r = reply(421, "4.4.1", "connect to mx[192.0.2.1]:25: Connection refused")
        raise ConnectError(r, r.text, local=True)

    sink = Sink()
    with pytest.raises(ConnectError) as info:
        asyncio.run(connect_under(plan(domain_policy(sts("enforce"))), MX, opener, sink))
    assert info.value.reply.enhanced == "4.4.1" and info.value.tls_policy == "mta-sts:enforce"
    assert sink.records == []
