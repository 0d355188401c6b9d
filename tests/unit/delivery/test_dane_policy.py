"""The outbound TLS policy framework with DANE (delivery/tlspolicy/policy.py over
tlspolicy/dane.py and the in-memory FakeResolver): when a host's plan is "dane"."""

from __future__ import annotations

import asyncio
import hashlib

from pigeon.config.tlspolicy import TlsPolicyConfig
from pigeon.delivery.tlspolicy.policy import TlsPolicies
from pigeon.routing.mx import Candidate
from pigeon.testing.certs import make_cert
from pigeon.testing.fakedns import FakeResolver
from pigeon.vocab import Nexthop

LEAF = make_cert(["mx.hosts.test"])
TLSA = f"_25._tcp.mx TLSA 3 0 1 {hashlib.sha256(LEAF.der).hexdigest()}\n"
ZONES = {"example.test": "@ MX 10 mx.hosts.test.\n", "hosts.test": "mx A 192.0.2.1\n" + TLSA}
CAND = Candidate("mx.hosts.test", "192.0.2.1", 25, 10)


def plan(signed: set[str], *, dane: bool = True, zones=ZONES):
    resolver = FakeResolver(zones, signed=signed)
    config = TlsPolicyConfig(mta_sts=False, dane=dane)
    policies = TlsPolicies(resolver, config, base_mode="may", cache_dir=None)

    async def go():
        domain_policy = await policies.for_nexthop(Nexthop("smtp", "example.test"))
        return await domain_policy.plan(CAND)

    return asyncio.run(go())


def test_validated_mx_and_tlsa_make_a_dane_plan():
    got = plan({"example.test", "hosts.test"})
    assert (got.label, got.mode, got.policy_type) == ("dane", "dane", "tlsa")
    assert got.required and got.check is not None
    assert got.check([LEAF.der]) is None  # the chain check is dane_verify
    assert got.check([make_cert(["mx.hosts.test"]).der]) is not None
    assert got.policy_strings == (TLSA.split("TLSA ")[1].strip(),)  # RFC 8460 §4.2


def test_insecure_mx_rrset_means_no_dane():
    # RFC 7672 §2.2.1: the MX host could be the attacker's choice; its TLSA records,
    # however well signed, are not asked for.
    got = plan({"hosts.test"})
    assert got.label == "none" and got.check is None


def test_dane_off_means_no_dane():
    assert plan({"example.test", "hosts.test"}, dane=False).label == "none"


def test_validated_but_unusable_tlsa_records_make_tls_mandatory_unauthenticated():
    # RFC 7672 §2.2: TLSA records exist and are validated, none is usable (PKIX-EE):
    # the host must still be reached over TLS, though nothing can authenticate it.
    unusable = f"_25._tcp.mx TLSA 1 0 1 {hashlib.sha256(LEAF.der).hexdigest()}\n"
    zones = dict(ZONES, **{"hosts.test": "mx A 192.0.2.1\n" + unusable})
    got = plan({"example.test", "hosts.test"}, zones=zones)
    assert (got.label, got.mode, got.policy_type) == ("dane", "encrypt", "tlsa")
    assert got.required and got.check is None
    assert got.policy_strings == (unusable.split("TLSA ")[1].strip(),)
