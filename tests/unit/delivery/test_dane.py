"""delivery/tlspolicy/dane.py: which TLSA records apply (dane_lookup, over the in-memory
FakeResolver) and whether a certificate chain matches them (dane_verify), RFC 7672."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pigeon.delivery.tlspolicy.dane import DaneLookup, dane_lookup, dane_verify
from pigeon.delivery.tlspolicy.peer import peer_chain
from pigeon.dns.api import MxRecord, TemporaryFailure, TlsaRecord
from pigeon.testing.certs import Issued, make_cert
from pigeon.testing.fakedns import FakeResolver

NOW = dt.datetime.now(dt.UTC)
CA = make_cert(["Test CA"], ca=True)
LEAF = make_cert(["mx.example.test"], issuer=CA)
OTHER_CA = make_cert(["Test CA"], ca=True)  # same subject, another key
STRANGER = make_cert(["mx.example.test"], issuer=OTHER_CA)


def spki(issued: Issued) -> bytes:
    return issued.cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def tlsa_text(usage: int, selector: int, mtype: int, issued: Issued) -> str:
    content = issued.der if selector == 0 else spki(issued)
    data = {0: content, 1: hashlib.sha256(content).digest(), 2: hashlib.sha512(content).digest()}
    return f"TLSA {usage} {selector} {mtype} {data[mtype].hex()}"


def zone(*tlsa: str, host: str = "mx") -> str:
    records = "\n".join(f"_25._tcp.{host} {t}" for t in tlsa)
    return f"@ MX 10 {host}\n{host} A 127.0.0.1\n{records}\n"


def lookup(zones: dict[str, str], host: str = "mx.example.test", **kwargs) -> DaneLookup | None:
    return asyncio.run(dane_lookup(FakeResolver(zones, **kwargs), host, 25))


def one(usage: int, selector: int, mtype: int, issued: Issued, host="mx.example.test"):
    found = lookup({"example.test": zone(tlsa_text(usage, selector, mtype, issued))}, host,
                   signed={"example.test"})  # fmt: skip
    assert found is not None
    return found


# --- dane_lookup: when DANE applies (RFC 7672 §2.2) -------------------------------------


def test_validated_tlsa_records_apply():
    found = one(3, 1, 1, LEAF)
    assert found.base_domain == "mx.example.test" and found.tlsa_name == "_25._tcp.mx.example.test"
    assert found.records == (TlsaRecord(3, 1, 1, hashlib.sha256(spki(LEAF)).digest()),)


def test_unsigned_zone_means_no_dane():
    assert lookup({"example.test": zone(tlsa_text(3, 1, 1, LEAF))}) is None


def test_no_tlsa_records_means_no_dane():
    assert lookup({"example.test": zone()}, signed={"example.test"}) is None


def test_insecure_host_address_means_no_tlsa_lookup():
    # The TLSA records are signed, the MX host's address is not (§2.2.2).
    resolver = FakeResolver(
        {
            "example.test": "@ MX 10 mx.hosts.test.\n",
            "hosts.test": "mx A 127.0.0.1\n_25._tcp.mx " + tlsa_text(3, 1, 1, LEAF),
        },
        signed={"example.test"},
    )
    assert asyncio.run(dane_lookup(resolver, "mx.hosts.test", 25)) is None
    assert ("_25._tcp.mx.hosts.test", "TLSA") not in resolver.queries


def test_failed_tlsa_lookup_in_a_validated_zone_defers():
    resolver = FakeResolver(
        {"example.test": zone()}, signed={"example.test"}, servfail={"_25._tcp.mx.example.test"}
    )
    with pytest.raises(TemporaryFailure):
        asyncio.run(dane_lookup(resolver, "mx.example.test", 25))


def test_only_dane_usages_are_usable():
    # PKIX-TA(0) and PKIX-EE(1) are unusable in SMTP (§3.1.3); an unknown selector or
    # matching type too. (dnspython refuses digests of the wrong length outright.)
    records = [tlsa_text(0, 1, 1, CA), tlsa_text(1, 1, 1, LEAF), "TLSA 3 1 9 " + "ab" * 32]
    records.append("TLSA 3 7 1 " + "ab" * 32)
    # §2.2: validated but all unusable: a lookup with no usable record (TLS mandatory,
    # not authenticated), the records kept for the log and the reports.
    none_usable = lookup({"example.test": zone(*records)}, signed={"example.test"})
    assert none_usable is not None and none_usable.mandatory_only
    assert len(none_usable.unusable) == 4
    records.append(tlsa_text(3, 1, 1, LEAF))
    found = lookup({"example.test": zone(*records)}, signed={"example.test"})
    assert found is not None and [r.usage for r in found.records] == [3]


def test_port_is_part_of_the_tlsa_name():
    resolver = FakeResolver({"example.test": zone(tlsa_text(3, 1, 1, LEAF))}, signed={"example.test"})  # fmt: skip
    assert asyncio.run(dane_lookup(resolver, "mx.example.test", 587)) is None
    assert ("_587._tcp.mx.example.test", "TLSA") in resolver.queries


def test_cname_expanded_name_is_tried_first_then_the_mx_name():
    target = "host A 127.0.0.1\n_25._tcp.host " + tlsa_text(3, 1, 1, LEAF)
    zones = {"example.test": "@ MX 10 mx\nmx CNAME host.isp.test.\n", "isp.test": target}
    found = lookup(zones, signed={"example.test", "isp.test"})
    assert found is not None and found.base_domain == "host.isp.test"
    assert found.reference_names == ("host.isp.test", "mx.example.test")
    # Without records at the expanded name, those of the MX host name (§2.2.2).
    zones = {
        "example.test": "@ MX 10 mx\nmx CNAME host.isp.test.\n_25._tcp.mx "
        + tlsa_text(3, 1, 1, LEAF),
        "isp.test": "host A 127.0.0.1\n",
    }
    found = lookup(zones, signed={"example.test", "isp.test"})
    assert found is not None and found.base_domain == "mx.example.test"


def test_resolver_without_dnssec_methods_means_no_dane():
    class PlainResolver:
        async def mx(self, name):
            return [MxRecord(10, "mx.example.test")]

        async def a(self, name):
            return ["127.0.0.1"]

        async def aaaa(self, name):
            return ["::1"]

        async def txt(self, name):
            return []

        async def ptr(self, address):
            return []

    assert asyncio.run(dane_lookup(PlainResolver(), "mx.example.test", 25)) is None


# --- dane_verify: DANE-EE(3) (RFC 7672 §3.1.1) ---------------------------------------


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ee_matches_the_leaf(selector, mtype):
    assert dane_verify(one(3, selector, mtype, LEAF), [LEAF.der, CA.der]) is None


def test_dane_ee_rejects_another_certificate():
    reason = dane_verify(one(3, 1, 1, LEAF), [STRANGER.der, OTHER_CA.der])
    assert reason is not None and "_25._tcp.mx.example.test" in reason


def test_dane_ee_ignores_names_and_expiry():
    expired = make_cert(["elsewhere.test"], not_after=NOW - dt.timedelta(days=1))
    assert dane_verify(one(3, 1, 1, expired), [expired.der]) is None


def test_dane_ee_matches_the_leaf_only():
    # A DANE-EE record of the CA does not authenticate the leaf it issued.
    assert dane_verify(one(3, 1, 1, CA), [LEAF.der, CA.der]) is not None


# --- dane_verify: DANE-TA(2) (RFC 7672 §3.1.2, §3.2.2) -------------------------------


@pytest.mark.parametrize("selector,mtype", [(0, 1), (1, 1), (0, 2), (1, 0)])
def test_dane_ta_matches_the_issuer_in_the_chain(selector, mtype):
    assert dane_verify(one(2, selector, mtype, CA), [LEAF.der, CA.der]) is None


def test_dane_ta_through_an_intermediate():
    intermediate = make_cert(["Test Intermediate"], issuer=CA, ca=True)
    leaf = make_cert(["mx.example.test"], issuer=intermediate)
    assert dane_verify(one(2, 1, 1, CA), [leaf.der, intermediate.der, CA.der]) is None
    reason = dane_verify(one(2, 1, 1, CA), [leaf.der, CA.der])  # intermediate not sent
    assert reason is not None and "does not chain" in reason


def test_dane_ta_requires_the_leaf_to_be_signed_by_the_anchor():
    # The anchor is sent, but the leaf was issued by another key of the same name.
    reason = dane_verify(one(2, 1, 1, CA), [STRANGER.der, CA.der])
    assert reason is not None and "does not chain" in reason


def test_dane_ta_checks_the_name():
    wrong = make_cert(["other.example.test"], issuer=CA)
    reason = dane_verify(one(2, 1, 1, CA), [wrong.der, CA.der])
    assert reason is not None and "other.example.test" in reason


def test_dane_ta_wildcard_covers_one_label():
    star = make_cert(["*.example.test"], issuer=CA)
    assert dane_verify(one(2, 1, 1, CA), [star.der, CA.der]) is None
    deep = make_cert(["*.test"], issuer=CA)
    assert dane_verify(one(2, 1, 1, CA), [deep.der, CA.der]) is not None


def test_dane_ta_common_name_only_without_san():
    cn_only = make_cert(["mx.example.test"], issuer=CA, san=False)
    assert dane_verify(one(2, 1, 1, CA), [cn_only.der, CA.der]) is None


def test_dane_ta_checks_expiry():
    expired = make_cert(["mx.example.test"], issuer=CA, not_after=NOW - dt.timedelta(days=1))
    reason = dane_verify(one(2, 1, 1, CA), [expired.der, CA.der])
    assert reason is not None and "expired" in reason


def test_issuer_must_be_a_ca():
    not_ca = make_cert(["Test CA"])  # basicConstraints cA=FALSE
    leaf = make_cert(["mx.example.test"], issuer=not_ca)
    assert dane_verify(one(2, 1, 1, not_ca), [leaf.der, not_ca.der]) is not None


def test_empty_or_garbage_chain_is_a_reason_not_an_exception():
    found = one(3, 1, 1, LEAF)
    assert dane_verify(found, []) is not None
    assert dane_verify(found, [b"not a certificate"]) is not None


def test_peer_chain_falls_back_to_the_leaf():
    class LeafOnly:
        def getpeercert(self, binary_form=False):
            return LEAF.der

    assert peer_chain(LeafOnly()) == [LEAF.der]
