"""MxResolver's rules (RFC 5321 §5.1) over zones held in memory (pigeon.testing.fakedns).

The dnspython resolver itself is tested against a real DNS server on
loopback in tests/unit/dns/test_resolvers.py, with the same zone text.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from pigeon.config.schema import Config, DeliveryConfig, ListenAddress
from pigeon.dns.api import MxRecord, TemporaryFailure
from pigeon.routing.mx import Candidate, MxResolver, ResolveError, own_identity
from pigeon.testing.fakedns import FakeResolver
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


ZONES = {"example.test": ZONE, "other.test": OTHER, "self.test": SELF}


@pytest.fixture
def dns():
    return FakeResolver(ZONES, servfail={"broken.test"}, timeout={"slow.test"})


def make(dns, *, seed: int = 1, remote_port: int = 25) -> MxResolver:
    return MxResolver(
        dns,
        remote_port=remote_port,
        own_names={"mx.self.test"},
        own_addresses={"198.51.100.7"},
        rng=random.Random(seed),
    )


def run(resolver: MxResolver, nexthop: Nexthop) -> list[Candidate]:
    return asyncio.run(resolver.candidates(nexthop))


def fail(resolver: MxResolver, nexthop: Nexthop) -> ResolveError:
    with pytest.raises(ResolveError) as info:
        run(resolver, nexthop)
    return info.value


def test_mx_ordered_by_preference_ipv6_first(dns):
    got = run(make(dns), Nexthop("smtp", "example.test"))
    assert got == [
        Candidate("mx1.example.test", "2001:db8::1", 25, 10),
        Candidate("mx1.example.test", "192.0.2.1", 25, 10),
        Candidate("mx2.example.test", "192.0.2.2", 25, 20),
        Candidate("mx3.other.test", "192.0.2.3", 25, 30),
    ]


def test_port_from_nexthop_or_config(dns):
    assert {
        c.port for c in run(make(dns, remote_port=2525), Nexthop("smtp", "plain.example.test"))
    } == {2525}
    assert {c.port for c in run(make(dns), Nexthop("smtp", "plain.example.test", port=587))} == {
        587
    }


def test_equal_preferences_are_shuffled(dns):
    orders = set()
    resolver = make(dns, seed=42)
    for _ in range(20):
        orders.add(tuple(c.host for c in run(resolver, Nexthop("smtp", "equal.example.test"))))
    assert orders == {
        ("a.equal.example.test", "b.equal.example.test"),
        ("b.equal.example.test", "a.equal.example.test"),
    }


def test_no_mx_uses_the_domain_address_as_implicit_mx(dns):
    got = run(make(dns), Nexthop("smtp", "plain.example.test"))
    assert got == [
        Candidate("plain.example.test", "2001:db8::20", 25, 0),
        Candidate("plain.example.test", "192.0.2.20", 25, 0),
    ]


def test_null_mx_is_permanent_556(dns):
    e = fail(make(dns), Nexthop("smtp", "nullmx.example.test"))
    assert (e.status, e.permanent) == ("5.1.10", True)
    assert e.message.startswith("556 5.1.10")


def test_nxdomain_is_permanent(dns):
    e = fail(make(dns), Nexthop("smtp", "nonexistent.example.test"))
    assert (e.status, e.permanent) == ("5.1.2", True)


def test_no_mx_and_no_address_is_permanent(dns):
    e = fail(make(dns), Nexthop("smtp", "textonly.example.test"))
    assert (e.status, e.permanent) == ("5.4.4", True)


def test_servfail_is_transient(dns):
    e = fail(make(dns), Nexthop("smtp", "broken.test"))
    assert (e.status, e.permanent) == ("4.4.3", False)


def test_timeout_is_transient(dns):
    e = fail(make(dns), Nexthop("smtp", "slow.test"))
    assert (e.status, e.permanent) == ("4.4.3", False)
    assert e.message == "cannot look up MX records of slow.test: DNS timeout after 10s"


class Unreachable:
    """A resolver whose every look-up fails for now (no name server answers)."""

    async def _fail(self, name: str) -> list:
        raise TemporaryFailure(name, "?", "no name server answered (REFUSED)")

    mx = a = aaaa = txt = ptr = _fail


def test_no_name_server_answering_is_transient():
    e = fail(make(Unreachable()), Nexthop("smtp", "example.test"))
    assert (e.status, e.permanent) == ("4.4.3", False)
    assert e.message.endswith("no name server answered (REFUSED)")
    # An explicit host: its address look-up fails the same way.
    e = fail(make(Unreachable()), Nexthop("smtp", "x.test", host="relay.example.test", mx=False))
    assert (e.status, e.permanent) == ("4.4.3", False)
    assert e.message.startswith("cannot look up the address of relay.example.test")


def test_an_mx_host_whose_address_look_up_fails_for_now_is_skipped(dns):
    dns.add_zone("flaky.test", "@ MX 10 mx.slow.test.\n@ MX 20 mx2.example.test.\n")
    got = run(make(dns), Nexthop("smtp", "flaky.test"))
    assert got == [Candidate("mx2.example.test", "192.0.2.2", 25, 20)]


def test_an_mx_record_list_with_a_null_mx_among_others_skips_it():
    class Answers(FakeResolver):
        async def mx(self, name: str) -> list[MxRecord]:
            return [MxRecord(0, "."), MxRecord(10, "mx2.example.test")]

    got = run(make(Answers(ZONES)), Nexthop("smtp", "mixed.test"))
    assert got == [Candidate("mx2.example.test", "192.0.2.2", 25, 10)]


def test_literals_and_sockets_ask_no_dns(dns):
    r = make(dns)
    run(r, Nexthop("smtp", "[192.0.2.5]", host="192.0.2.5", mx=False))
    run(r, Nexthop("lmtp", "example.test", host="/run/lmtp", mx=False))
    assert dns.queries == []
    run(r, Nexthop("smtp", "relay.example.test", host="relay.example.test", mx=False))
    assert sorted(dns.queries) == [("relay.example.test", "A"), ("relay.example.test", "AAAA")]


def test_a_resolver_bug_is_not_turned_into_a_dns_answer():
    class Broken(FakeResolver):
        async def a(self, name: str) -> list[str]:
            raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        run(make(Broken(ZONES)), Nexthop("smtp", "plain.example.test"))


def test_unresolvable_mx_hosts_are_skipped(dns):
    got = run(make(dns), Nexthop("smtp", "halfdead.example.test"))
    assert got == [Candidate("mx2.example.test", "192.0.2.2", 25, 20)]
    e = fail(make(dns), Nexthop("smtp", "dangling.example.test"))
    assert (e.status, e.permanent) == ("4.4.4", False)


def test_loop_own_name_as_best_mx(dns):
    e = fail(make(dns), Nexthop("smtp", "loop.example.test"))
    assert (e.status, e.permanent) == ("5.4.6", True)
    assert e.message == "mail for loop.example.test loops back to myself"


def test_loop_own_name_as_backup_keeps_only_better_mx(dns):
    got = run(make(dns), Nexthop("smtp", "backup.example.test"))
    assert {c.host for c in got} == {"mx1.example.test"}


def test_loop_by_own_address(dns):
    e = fail(make(dns), Nexthop("smtp", "byaddr.example.test"))
    assert e.status == "5.4.6"


def test_bracketed_host_skips_mx(dns):
    nh = Nexthop("smtp", "example.test", host="relay.example.test", port=587, mx=False)
    assert run(make(dns), nh) == [Candidate("relay.example.test", "192.0.2.99", 587, 0)]
    # Brackets also skip loop detection: a filter on our own host is legitimate.
    nh = Nexthop("smtp", "example.test", host="us.example.test", port=10025, mx=False)
    assert run(make(dns), nh) == [Candidate("us.example.test", "198.51.100.7", 10025, 0)]


def test_unbracketed_host_uses_its_mx(dns):
    nh = Nexthop("smtp", "customer.test", host="example.test")
    assert run(make(dns), nh)[0].host == "mx1.example.test"


def test_configured_host_failures_are_transient(dns):
    e = fail(make(dns), Nexthop("smtp", "x.test", host="nothere.example.test", mx=False))
    assert (e.status, e.permanent) == ("4.4.4", False)
    e = fail(make(dns), Nexthop("smtp", "x.test", host="nothere.example.test"))
    assert (e.status, e.permanent) == ("4.4.4", False)


def test_ip_literals_and_lmtp(dns):
    r = make(dns)
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


def test_local_and_discard_are_not_resolvable(dns):
    with pytest.raises(ValueError):
        run(make(dns), Nexthop("discard", "example.test"))


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
