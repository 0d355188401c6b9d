"""Router: local/remote resolution, alias expansion, loops, postmaster."""

from __future__ import annotations

from pathlib import Path

from pigeon.config.schema import Config, DomainConfig
from pigeon.routing.resolve import MAX_DEPTH, Router
from pigeon.vocab import Nexthop, Route


def make_config(aliases=None, **kw) -> Config:
    return Config(
        hostname="mx.example.test",
        data_dir=Path("/data"),
        domains={
            "example.test": DomainConfig("example.test", frozenset({"alice", "bob"})),
            "open.test": DomainConfig("open.test"),
        },
        aliases=aliases or {},
        **kw,
    )


def local(addr: str) -> Route:
    loc, dom = addr.split("@")
    return Route.local(addr, Path("/data/mailboxes") / dom / loc)


def test_local_and_remote():
    r = Router(make_config())
    assert r.resolve("Alice@Example.TEST") == [local("alice@example.test")]
    assert r.resolve("x@elsewhere.test") == [
        Route.remote("x@elsewhere.test", Nexthop("smtp", "elsewhere.test"))
    ]
    assert r.resolve("x@[192.0.2.1]") == [
        Route.remote("x@[192.0.2.1]", Nexthop("smtp", "[192.0.2.1]", "192.0.2.1", None, False))
    ]


def test_alias_expands_recursively_to_local_and_remote_with_dedupe():
    r = Router(
        make_config(
            {
                "info@example.test": (
                    "sales@example.test",
                    "alice@example.test",
                    "carol@remote.test",
                ),
                "sales@example.test": ("bob", "alice@example.test"),  # bare target: same domain
            }
        )
    )
    assert r.resolve("INFO@example.test") == [
        local("bob@example.test"),
        local("alice@example.test"),
        Route.remote("carol@remote.test", Nexthop("smtp", "remote.test")),
    ]


def test_alias_naming_itself_delivers_to_the_mailbox():
    r = Router(make_config({"alice@example.test": ("alice@example.test", "bob@example.test")}))
    assert r.resolve("alice@example.test") == [
        local("alice@example.test"),
        local("bob@example.test"),
    ]
    assert r.resolve("alice@example.test", expand_aliases=False) == [local("alice@example.test")]


def test_alias_loop_terminates():
    r = Router(
        make_config({"a@example.test": ("b@example.test",), "b@example.test": ("a@example.test",)})
    )
    assert r.resolve("a@example.test") == [local("a@example.test")]
    assert r.resolve("b@example.test") == [local("b@example.test")]


def test_alias_chain_deeper_than_limit_stops():
    chain = {f"l{i}@example.test": (f"l{i + 1}@example.test",) for i in range(50)}
    r = Router(make_config(chain))
    assert r.resolve("l0@example.test") == [local(f"l{MAX_DEPTH}@example.test")]


def test_mailbox_exists_and_postmaster():
    r = Router(make_config())
    assert r.mailbox_exists("alice@example.test")
    assert not r.mailbox_exists("carol@example.test")
    assert r.mailbox_exists("anyone@open.test")  # no mailbox list
    assert r.mailbox_exists("PostMaster@example.test")  # RFC 5321 §4.5.1
    assert not r.mailbox_exists("x@elsewhere.test")
    assert r.is_local_domain("EXAMPLE.test") and not r.is_local_domain("elsewhere.test")


def test_bare_postmaster_goes_to_primary_domain():
    r = Router(make_config())
    assert r.primary_domain == "example.test"  # hostname not local: first domain
    assert r.resolve("postmaster") == [local("postmaster@example.test")]
    r2 = Router(make_config({"postmaster@example.test": ("alice@example.test",)}))
    assert r2.resolve("Postmaster") == [local("alice@example.test")]
