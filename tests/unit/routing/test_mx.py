"""MxResolver against a real DNS server on loopback (pigeon.testing.dnsserver)."""

from __future__ import annotations

import asyncio
import random

import pytest

from pigeon.config.schema import Config, DeliveryConfig, ListenAddress, Nameserver
from pigeon.routing.mx import Candidate, MxResolver, ResolveError, own_identity
from pigeon.testing.dnsserver import DnsServer
from pigeon.vocab import Nexthop

ZONE = """
@           MX 10 mx1
@           MX 20 mx2
@           MX 30 mx3.other.test.
mx1         AAAA 2001:db8::1
mx1         A 192.0.2.1
mx2         A 192.0.2.2
equal       MX 10 a.equal
equal       MX 10 b.equal
a.equal     A 192.0.2.10
b.equal     A 192.0.2.11
plain       A 192.0.2.20
plain       AAAA 2001:db8::20
nullmx      MX 0 .
dangling    MX 10 nowhere.example.test.
dangling    MX 20 broken.test.
halfdead    MX 10 nowhere.example.test.
halfdead    MX 20 mx2
loop        MX 10 mx.self.test.
loop        MX 20 mx1
backup      MX 10 mx1
backup      MX 20 mx.self.test.
backup      MX 30 mx2
byaddr      MX 10 us
us          A 198.51.100.7
textonly    TXT "no mail here"
relay       A 192.0.2.99
"""
OTHER = """
mx3   A 192.0.2.3
"""
SELF = """
mx    A 203.0.113.1
"""


@pytest.fixture(scope="module")
def dns_server():
    with DnsServer(
        zones={"example.test": ZONE, "other.test": OTHER, "self.test": SELF},
        servfail={"broken.test"},
        timeout={"slow.test"},
    ) as server:
        yield server


def make(dns_server, *, seed: int = 1, timeout: float = 3.0, **kw) -> MxResolver:
    cfg = DeliveryConfig(
        dns_servers=(Nameserver("127.0.0.1", dns_server.port),), dns_timeout=timeout, **kw
    )
    return MxResolver(
        cfg, own_names={"mx.self.test"}, own_addresses={"198.51.100.7"}, rng=random.Random(seed)
    )


def run(resolver: MxResolver, nexthop: Nexthop) -> list[Candidate]:
    return asyncio.run(resolver.candidates(nexthop))


def fail(resolver: MxResolver, nexthop: Nexthop) -> ResolveError:
    with pytest.raises(ResolveError) as info:
        run(resolver, nexthop)
    return info.value


def test_mx_ordered_by_preference_ipv6_first(dns_server):
    got = run(make(dns_server), Nexthop("smtp", "example.test"))
    assert got == [
        Candidate("mx1.example.test", "2001:db8::1", 25, 10),
        Candidate("mx1.example.test", "192.0.2.1", 25, 10),
        Candidate("mx2.example.test", "192.0.2.2", 25, 20),
        Candidate("mx3.other.test", "192.0.2.3", 25, 30),
    ]


def test_port_from_nexthop_or_config(dns_server):
    assert {
        c.port
        for c in run(make(dns_server, remote_port=2525), Nexthop("smtp", "plain.example.test"))
    } == {2525}
    assert {
        c.port for c in run(make(dns_server), Nexthop("smtp", "plain.example.test", port=587))
    } == {587}


def test_equal_preferences_are_shuffled(dns_server):
    orders = set()
    resolver = make(dns_server, seed=42)
    for _ in range(20):
        orders.add(tuple(c.host for c in run(resolver, Nexthop("smtp", "equal.example.test"))))
    assert orders == {
        ("a.equal.example.test", "b.equal.example.test"),
        ("b.equal.example.test", "a.equal.example.test"),
    }


def test_no_mx_uses_the_domain_address_as_implicit_mx(dns_server):
    got = run(make(dns_server), Nexthop("smtp", "plain.example.test"))
    assert got == [
        Candidate("plain.example.test", "2001:db8::20", 25, 0),
        Candidate("plain.example.test", "192.0.2.20", 25, 0),
    ]


def test_null_mx_is_permanent_556(dns_server):
    e = fail(make(dns_server), Nexthop("smtp", "nullmx.example.test"))
    assert (e.status, e.permanent) == ("5.1.10", True)
    assert e.message.startswith("556 5.1.10")


def test_nxdomain_is_permanent(dns_server):
    e = fail(make(dns_server), Nexthop("smtp", "nonexistent.example.test"))
    assert (e.status, e.permanent) == ("5.1.2", True)


def test_no_mx_and_no_address_is_permanent(dns_server):
    e = fail(make(dns_server), Nexthop("smtp", "textonly.example.test"))
    assert (e.status, e.permanent) == ("5.4.4", True)


def test_servfail_is_transient(dns_server):
    e = fail(make(dns_server), Nexthop("smtp", "broken.test"))
    assert (e.status, e.permanent) == ("4.4.3", False)


def test_timeout_is_transient(dns_server):
    e = fail(make(dns_server, timeout=0.3), Nexthop("smtp", "slow.test"))
    assert (e.status, e.permanent) == ("4.4.3", False)
    assert "timeout" in e.message


def test_no_name_server_answering_is_transient():
    # A port nobody serves: ICMP refusal or timeout, either way 4.4.3.
    with DnsServer() as server:
        port = server.port
    cfg = DeliveryConfig(dns_servers=(Nameserver("127.0.0.1", port),), dns_timeout=0.3)
    resolver = MxResolver(cfg, own_names=set(), own_addresses=set())
    with pytest.raises(ResolveError) as info:
        asyncio.run(resolver.candidates(Nexthop("smtp", "example.test")))
    assert (info.value.status, info.value.permanent) == ("4.4.3", False)


def test_unresolvable_mx_hosts_are_skipped(dns_server):
    got = run(make(dns_server), Nexthop("smtp", "halfdead.example.test"))
    assert got == [Candidate("mx2.example.test", "192.0.2.2", 25, 20)]
    e = fail(make(dns_server), Nexthop("smtp", "dangling.example.test"))
    assert (e.status, e.permanent) == ("4.4.4", False)


def test_loop_own_name_as_best_mx(dns_server):
    e = fail(make(dns_server), Nexthop("smtp", "loop.example.test"))
    assert (e.status, e.permanent) == ("5.4.6", True)
    assert e.message == "mail for loop.example.test loops back to myself"


def test_loop_own_name_as_backup_keeps_only_better_mx(dns_server):
    got = run(make(dns_server), Nexthop("smtp", "backup.example.test"))
    assert {c.host for c in got} == {"mx1.example.test"}


def test_loop_by_own_address(dns_server):
    e = fail(make(dns_server), Nexthop("smtp", "byaddr.example.test"))
    assert e.status == "5.4.6"


def test_bracketed_host_skips_mx(dns_server):
    nh = Nexthop("smtp", "example.test", host="relay.example.test", port=587, mx=False)
    assert run(make(dns_server), nh) == [Candidate("relay.example.test", "192.0.2.99", 587, 0)]
    # Brackets also skip loop detection: a filter on our own host is legitimate.
    nh = Nexthop("smtp", "example.test", host="us.example.test", port=10025, mx=False)
    assert run(make(dns_server), nh) == [Candidate("us.example.test", "198.51.100.7", 10025, 0)]


def test_unbracketed_host_uses_its_mx(dns_server):
    nh = Nexthop("smtp", "customer.test", host="example.test")
    assert run(make(dns_server), nh)[0].host == "mx1.example.test"


def test_configured_host_failures_are_transient(dns_server):
    e = fail(make(dns_server), Nexthop("smtp", "x.test", host="nothere.example.test", mx=False))
    assert (e.status, e.permanent) == ("4.4.4", False)
    e = fail(make(dns_server), Nexthop("smtp", "x.test", host="nothere.example.test"))
    assert (e.status, e.permanent) == ("4.4.4", False)


def test_ip_literals_and_lmtp(dns_server):
    r = make(dns_server)
    assert run(r, Nexthop("smtp", "[192.0.2.5]", host="192.0.2.5", mx=False)) == [
        Candidate("192.0.2.5", "192.0.2.5", 25, 0)
    ]
    assert run(r, Nexthop("smtp", "[IPv6:2001:db8::5]")) == [
        Candidate("2001:db8::5", "2001:db8::5", 25, 0)
    ]
    assert run(r, Nexthop("lmtp", "example.test", host="127.0.0.1", mx=False)) == [
        Candidate("127.0.0.1", "127.0.0.1", 24, 0)
    ]
    assert run(r, Nexthop("lmtp", "example.test", host="/run/lmtp", mx=False)) == [
        Candidate("/run/lmtp", "/run/lmtp", 0, 0)
    ]
    # LMTP never looks up MX, even without brackets.
    assert run(r, Nexthop("lmtp", "example.test", host="plain.example.test", port=2424)) == [
        Candidate("plain.example.test", "2001:db8::20", 2424, 0),
        Candidate("plain.example.test", "192.0.2.20", 2424, 0),
    ]


def test_local_and_discard_are_not_resolvable(dns_server):
    with pytest.raises(ValueError):
        run(make(dns_server), Nexthop("discard", "example.test"))


def test_resolve_error_attributes():
    e = ResolveError("mail for x loops back to myself", "5.4.6", True)
    assert (e.message, e.status, e.permanent) == ("mail for x loops back to myself", "5.4.6", True)
    assert str(e) == "5.4.6 mail for x loops back to myself"


def test_own_identity():
    cfg = Config(
        hostname="mx.example.test",
        listen=(
            ListenAddress("0.0.0.0", 25),
            ListenAddress("192.0.2.1", 25),
            ListenAddress("smtp.example.test", 2525),
        ),
        delivery=DeliveryConfig(
            own_addresses=("198.51.100.1", "nat.example.test"), helo_name="out.example.test"
        ),
    )
    names, addresses = own_identity(cfg)
    assert names == {"mx.example.test", "smtp.example.test", "nat.example.test", "out.example.test"}
    assert addresses == {"192.0.2.1", "198.51.100.1"}
