"""Router next-hop decisions: transports (exact, parent), local, smarthost, literals."""

from __future__ import annotations

from pathlib import Path

from pigeon.config.schema import Config, DeliveryConfig, DomainConfig, TransportSpec
from pigeon.routing.resolve import Router, literal_ip
from pigeon.vocab import Nexthop, Route

RELAY = TransportSpec("smtp", "relay.example.net", 587, False)


def make(transports=None, relay=None) -> Router:
    return Router(
        Config(
            hostname="mx.example.test",
            data_dir=Path("/data"),
            domains={"example.test": DomainConfig("example.test", frozenset({"alice"}))},
            transports=transports or {},
            delivery=DeliveryConfig(relay_host=relay),
        )
    )


def target(router: Router, address: str):
    """The Maildir of a local route, the Nexthop of another."""
    [route] = router.resolve(address)
    return route.mailbox if route.kind == "local" else route.nexthop


def test_default_is_mx_lookup_of_the_domain():
    assert target(make(), "x@Remote.TEST") == Nexthop("smtp", "remote.test")


def test_address_literals():
    r = make()
    assert target(r, "x@[192.0.2.1]") == Nexthop("smtp", "[192.0.2.1]", "192.0.2.1", None, False)
    assert target(r, "x@[IPv6:2001:DB8::1]") == Nexthop(
        "smtp", "[ipv6:2001:db8::1]", "2001:db8::1", None, False
    )
    assert target(r, "x@[not-an-ip]") == Nexthop("smtp", "[not-an-ip]")
    assert literal_ip("[2001:db8::1]") is None  # IPv6 needs the "IPv6:" tag (RFC 5321 §4.1.3)


def test_smarthost_for_remote_and_literals_not_local():
    r = make(relay=RELAY)
    assert target(r, "x@remote.test") == Nexthop(
        "smtp", "remote.test", "relay.example.net", 587, False
    )
    assert target(r, "x@[192.0.2.1]") == Nexthop(
        "smtp", "[192.0.2.1]", "relay.example.net", 587, False
    )
    assert target(r, "alice@example.test") == Path("/data/mailboxes/example.test/alice")


def test_transport_exact_then_nearest_parent():
    r = make(
        {
            "example.org": TransportSpec("smtp", "exact.example.net", None, False),
            ".example.org": TransportSpec("lmtp", "/run/lmtp", None, False),
            ".b.example.org": TransportSpec("smtp", "b.example.net", 2525, True),
        },
        relay=RELAY,
    )
    assert target(r, "x@example.org") == Nexthop(
        "smtp", "example.org", "exact.example.net", None, False
    )
    assert target(r, "x@a.example.org") == Nexthop(
        "lmtp", "a.example.org", "/run/lmtp", None, False
    )
    assert target(r, "x@c.b.example.org") == Nexthop(
        "smtp", "c.b.example.org", "b.example.net", 2525
    )
    assert target(r, "x@b.example.org") == Nexthop(
        "lmtp", "b.example.org", "/run/lmtp", None, False
    )
    assert target(r, "x@notexample.org") == Nexthop(
        "smtp", "notexample.org", "relay.example.net", 587, False
    )


def test_transport_overrides_local_domain_and_discard():
    r = make({"example.test": TransportSpec("discard")})
    assert r.resolve("alice@example.test") == [
        Route.remote("alice@example.test", Nexthop("discard", "example.test"))
    ]


def test_transport_local_makes_a_domain_local():
    r = make({".lists.example.test": TransportSpec("local")}, relay=RELAY)
    assert target(r, "Anyone@dev.lists.example.test") == Path(
        "/data/mailboxes/dev.lists.example.test/anyone"
    )
    assert r.is_local_domain("dev.lists.example.test")
    assert r.mailbox_exists("anyone@dev.lists.example.test")
    assert not r.mailbox_exists("anyone@lists.example.test")


def test_nexthops_group_equal_destinations():
    r = make(relay=RELAY)
    routes = r.resolve("a@remote.test") + r.resolve("b@REMOTE.test") + r.resolve("c@other.test")
    groups: dict[Nexthop, list[str]] = {}
    for route in routes:
        groups.setdefault(route.nexthop, []).append(route.address)
    assert list(groups.values()) == [["a@remote.test", "b@remote.test"], ["c@other.test"]]
