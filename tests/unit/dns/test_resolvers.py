"""pigeon.dns: the dnspython StubResolver against a real DNS server on loopback, and
the in-memory FakeResolver, answering the same cases from the same zone text.

Running one set of cases against both keeps the fake honest: a unit test that
passes against the fake would pass against real DNS.
"""

from __future__ import annotations

import asyncio

import pytest

from pigeon.config.schema import DeliveryConfig, Nameserver
from pigeon.dns import MxRecord, NoData, NoSuchDomain, Resolver, TemporaryFailure
from pigeon.dns.api import Answer, DnssecResolver, TlsaRecord
from pigeon.dns.stub import StubResolver
from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.fakedns import FakeResolver

ZONE = """
@           MX 10 mx1
@           MX 20 mx2.other.test.
mx1         A 192.0.2.1
mx1         AAAA 2001:DB8:0:0::1
nullmx      MX 0 .
alias       CNAME mx1
away        CNAME somewhere.else.test.
spf         TXT "v=spf1 " "ip4:192.0.2.0/24 -all"
spf         TXT "second record"
MiXeD       A 192.0.2.7
a.b.deep    A 192.0.2.8
_25._tcp.mx1 TLSA 3 1 1 0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef
_25._tcp.mx1 TLSA 2 0 0 3082
"""
REVERSE = """
1           PTR mx1.example.test.
"""
ZONES = {"example.test": ZONE, "2.0.192.in-addr.arpa": REVERSE}
SERVFAIL, TIMEOUT = {"broken.test"}, {"slow.test"}


@pytest.fixture(scope="module")
def dns_server():
    with DnsServer(zones=ZONES, servfail=SERVFAIL, timeout=TIMEOUT) as server:
        yield server


def stub(port: int, timeout: float = 2.0) -> StubResolver:
    config = DeliveryConfig(dns_servers=(Nameserver("127.0.0.1", port),), dns_timeout=timeout)
    return StubResolver.from_config(config)


@pytest.fixture(params=["stub", "fake"])
def resolver(request) -> Resolver:
    if request.param == "fake":
        return FakeResolver(ZONES, servfail=SERVFAIL, timeout=TIMEOUT, lookup_timeout=0.3)
    return stub(request.getfixturevalue("dns_server").port, timeout=0.3)


def run(coro):
    return asyncio.run(coro)


def test_mx_records_as_values(resolver):
    got = run(resolver.mx("example.test"))
    assert sorted(got, key=lambda r: r.preference) == [
        MxRecord(10, "mx1.example.test"),
        MxRecord(20, "mx2.other.test"),
    ]


def test_null_mx_is_the_root(resolver):
    (record,) = run(resolver.mx("nullmx.example.test"))
    assert record == MxRecord(0, ".") and record.null


def test_addresses_in_canonical_form(resolver):
    assert run(resolver.a("mx1.example.test")) == ["192.0.2.1"]
    assert run(resolver.aaaa("mx1.example.test")) == ["2001:db8::1"]
    assert run(resolver.a("MIXED.Example.Test.")) == ["192.0.2.7"]


def test_cname_chains_are_followed(resolver):
    assert run(resolver.a("alias.example.test")) == ["192.0.2.1"]
    with pytest.raises(NoData):  # the CNAME leads out of every zone: nothing of the type
        run(resolver.a("away.example.test"))


def test_tlsa_records_as_values(resolver):
    got = run(resolver.tlsa("_25._tcp.mx1.example.test"))
    digest = bytes.fromhex("0123456789abcdef" * 4)
    assert sorted(got.records, key=lambda r: r.usage) == [
        TlsaRecord(2, 0, 0, b"\x30\x82"),
        TlsaRecord(3, 1, 1, digest),
    ]
    assert got.name == "_25._tcp.mx1.example.test"
    assert str(TlsaRecord(3, 1, 1, digest)) == "3 1 1 " + "0123456789abcdef" * 4
    with pytest.raises(NoSuchDomain):
        run(resolver.tlsa("_25._tcp.nothere.example.test"))


def test_answers_say_whether_validated(resolver):
    # Neither the test server nor the fake's unsigned zones validate: secure is False
    # (the AD bit from a validating resolver: tests/e2e/test_dane_unbound.py).
    assert isinstance(resolver, DnssecResolver)
    assert run(resolver.mx_answer("example.test")).secure is False
    assert run(resolver.a_answer("alias.example.test")) == Answer(
        ["192.0.2.1"],
        False,
        "mx1.example.test",  # the name after the CNAME
    )
    assert run(resolver.aaaa_answer("mx1.example.test")).records == ["2001:db8::1"]


def test_fake_signed_zones_answer_secure():
    fake = FakeResolver(ZONES, signed={"example.test"})
    assert run(fake.mx_answer("example.test")).secure is True
    assert run(fake.tlsa("_25._tcp.mx1.example.test")).secure is True
    assert run(fake.a_answer("alias.example.test")).secure is True
    assert run(fake.ptr("192.0.2.1")) == ["mx1.example.test"]  # the plain look-ups stay


def test_txt_strings_are_concatenated_per_record(resolver):
    assert sorted(run(resolver.txt("spf.example.test"))) == [
        "second record",
        "v=spf1 ip4:192.0.2.0/24 -all",
    ]


def test_ptr(resolver):
    assert run(resolver.ptr("192.0.2.1")) == ["mx1.example.test"]
    with pytest.raises(ValueError):
        run(resolver.ptr("not-an-address"))


def test_no_such_domain(resolver):
    with pytest.raises(NoSuchDomain) as info:
        run(resolver.mx("nothere.example.test"))
    assert (info.value.name, info.value.rdtype) == ("nothere.example.test", "MX")
    with pytest.raises(NoSuchDomain):
        run(resolver.a("elsewhere.test"))  # in no zone at all
    with pytest.raises(NoSuchDomain):
        run(resolver.a("bad..name.test"))  # cannot be a DNS name


def test_no_data_is_not_no_such_domain(resolver):
    with pytest.raises(NoData):
        run(resolver.mx("mx1.example.test"))  # exists, has addresses, no MX
    with pytest.raises(NoData):
        run(resolver.a("b.deep.example.test"))  # an empty non-terminal exists


def test_servfail_and_timeout_are_temporary(resolver):
    with pytest.raises(TemporaryFailure):
        run(resolver.mx("broken.test"))
    with pytest.raises(TemporaryFailure) as info:
        run(resolver.mx("x.slow.test"))
    assert "timeout after 0.3s" in info.value.reason


def test_the_failures_are_one_small_hierarchy():
    from pigeon.dns import DnsError

    for kind in (NoSuchDomain, NoData, TemporaryFailure):
        assert issubclass(kind, DnsError)
    assert len({NoSuchDomain, NoData, TemporaryFailure}) == 3
    e = TemporaryFailure("x.test", "MX", "DNS timeout after 3s")
    assert str(e) == "x.test MX: DNS timeout after 3s"


# --- the stub alone: the network -------------------------------------------------------------


def test_stub_no_name_server_answering_is_temporary():
    with DnsServer() as server:
        port = server.port  # closed again: nobody serves this port now
    with pytest.raises(TemporaryFailure):
        run(stub(port, timeout=0.3).a("example.test"))


def test_stub_every_look_up_is_bounded_by_its_timeout(dns_server):
    """A server that never answers: each look-up ends after its timeout (bounded polling:
    the whole batch must end well within the test's own limit)."""
    resolver = stub(dns_server.port, timeout=0.3)

    async def many() -> list[BaseException | list[str]]:
        return await asyncio.wait_for(
            asyncio.gather(
                *(resolver.a(f"h{i}.slow.test") for i in range(5)), return_exceptions=True
            ),
            timeout=30,
        )

    assert all(isinstance(r, TemporaryFailure) for r in run(many()))


def test_stub_asks_the_configured_server_without_search_list(dns_server):
    before = len(dns_server.queries)
    run(stub(dns_server.port).mx("example.test"))
    assert dns_server.queries[before:] == [("example.test", "MX", "udp")]


def test_an_unconfigured_stub_defers_every_look_up(tmp_path):
    resolver = StubResolver(resolv_conf=str(tmp_path / "no-resolv.conf"))  # never raises
    with pytest.raises(TemporaryFailure) as info:
        run(resolver.mx("example.test"))
    assert info.value.reason.startswith("no DNS resolver configuration")
