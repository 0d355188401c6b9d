"""Router: recipient delimiter, catch-all aliases, aliases_file entries, duplicate keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from pigeon.config.schema import Config, DomainConfig
from pigeon.routing.resolve import Router, split_extension
from pigeon.vocab import Nexthop, Route

ROOT = Path("/data/mailboxes")


def make_router(aliases=None, **kw) -> Router:
    return Router(
        Config(
            hostname="mx.example.test",
            data_dir=Path("/data"),
            domains={
                "example.test": DomainConfig(
                    "example.test", frozenset({"alice", "bob", "a+b", "catchall"})
                ),
                "open.test": DomainConfig("open.test"),
            },
            aliases=aliases or {},
            **kw,
        )
    )


def local(address: str, mailbox: str) -> Route:
    return Route.local(address, ROOT / address.rpartition("@")[2] / mailbox)


@pytest.mark.parametrize(
    "local_part, delimiters, expected",
    [
        ("alice+news", "+", ("alice", "+news")),
        ("alice+a+b", "+", ("alice", "+a+b")),  # the first delimiter splits
        ("alice-news", "+-", ("alice", "-news")),
        ("alice+news", "", ("alice+news", "")),  # no delimiter: never split
        ("+news", "+", ("+news", "")),  # a leading delimiter does not split
        ("owner-list+x", "+-", ("owner-list+x", "")),  # Postfix: owner-* and *-request
        ("list-request", "-", ("list-request", "")),
        ("alice", "+", ("alice", "")),
    ],
)
def test_split_extension(local_part, delimiters, expected):
    assert split_extension(local_part, delimiters) == expected


def test_extension_delivers_to_the_mailbox_and_keeps_the_address():
    r = make_router()
    assert r.resolve("Alice+News@example.test") == [local("alice+news@example.test", "alice")]
    assert r.mailbox_exists("alice+news@example.test")
    assert not r.mailbox_exists("carol+news@example.test")
    # A list-less domain: the mailbox is the local part without its extension.
    assert r.resolve("zed+x@open.test") == [local("zed+x@open.test", "zed")]
    # A listed mailbox whose name holds the delimiter is matched whole first.
    assert r.resolve("a+b@example.test") == [local("a+b@example.test", "a+b")]
    assert r.resolve("a+c@example.test") == [local("a+c@example.test", "a")]
    assert not r.mailbox_exists("a+c@example.test")  # "a" is no mailbox
    assert r.resolve("postmaster+x@example.test") == [
        local("postmaster+x@example.test", "postmaster")
    ]


def test_delimiter_is_configurable_and_can_be_off():
    r = make_router(recipient_delimiter="-.")
    assert r.resolve("alice.news@example.test") == [local("alice.news@example.test", "alice")]
    assert not make_router(recipient_delimiter="").mailbox_exists("alice+news@example.test")


def test_alias_matched_with_then_without_extension():
    r = make_router(
        {
            "team@example.test": ("alice@example.test", "bob@example.test"),
            "team+sales@example.test": ("bob@example.test",),
        }
    )
    assert r.resolve("team+dev@example.test") == [
        local("alice@example.test", "alice"),
        local("bob@example.test", "bob"),
    ]
    assert r.resolve("team+sales@example.test") == [local("bob@example.test", "bob")]


def test_catch_all_only_when_no_mailbox_or_alias_matches():
    r = make_router(
        {"@example.test": ("catchall@example.test",), "sales@example.test": ("bob@example.test",)}
    )
    assert r.resolve("nobody@example.test") == [local("catchall@example.test", "catchall")]
    assert r.resolve("alice@example.test") == [local("alice@example.test", "alice")]
    assert r.resolve("alice+x@example.test") == [local("alice+x@example.test", "alice")]
    assert r.resolve("sales@example.test") == [local("bob@example.test", "bob")]
    assert r.resolve("postmaster@example.test") == [local("postmaster@example.test", "postmaster")]
    assert r.is_alias("nobody@example.test") and not r.is_alias("alice@example.test")


def test_catch_all_of_a_list_less_domain_takes_every_unaliased_local_part():
    r = make_router({"@open.test": ("inbox@open.test",)})
    assert r.resolve("anyone@open.test") == [local("inbox@open.test", "inbox")]
    assert r.resolve("inbox@open.test") == [local("inbox@open.test", "inbox")]  # Rule 3
    assert r.resolve("other+x@open.test") == [local("inbox@open.test", "inbox")]


def test_catch_all_may_point_elsewhere():
    r = make_router({"@open.test": ("archive@remote.test",)})
    assert r.resolve("x@open.test") == [
        Route.remote("archive@remote.test", Nexthop("smtp", "remote.test"))
    ]


def test_aliases_file_entries_apply_in_every_local_domain():
    r = make_router(
        local_aliases={
            "root": ("alice",),
            "staff": ("alice", "\\bob", "x@remote.test"),
            "bob": ("alice",),
        }
    )
    assert r.resolve("root@example.test") == [local("alice@example.test", "alice")]
    assert r.resolve("ROOT+cron@open.test") == [local("alice@open.test", "alice")]
    # "\bob" is bob's mailbox, not the "bob" alias again (aliases(5)).
    assert r.resolve("staff@example.test") == [
        local("alice@example.test", "alice"),
        local("bob@example.test", "bob"),
        Route.remote("x@remote.test", Nexthop("smtp", "remote.test")),
    ]
    assert r.resolve("root@remote.test") == [  # not a local domain: not applied
        Route.remote("root@remote.test", Nexthop("smtp", "remote.test"))
    ]


def test_quoted_aliases_file_name_matches_the_quoted_address():
    from pigeon.vocab.address import Address

    r = make_router(local_aliases={'"first last"': ("alice",)})
    assert r.resolve(str(Address("First Last", "example.test"))) == [
        local("alice@example.test", "alice")
    ]


def test_table_aliases_come_before_the_aliases_file():
    r = make_router(
        {"root@example.test": ("bob@example.test",)}, local_aliases={"root": ("alice",)}
    )
    assert r.resolve("root@example.test") == [local("bob@example.test", "bob")]
    assert r.resolve("root@open.test") == [local("alice@open.test", "alice")]


def test_merge_key_and_delivery_key():
    r = make_router({"team@example.test": ("alice@example.test",)})
    key = r.merge_key
    assert key("Alice@Example.TEST") == key("alice+x@example.test") == key("alice@example.test")
    assert key("a+b@example.test") != key("a@example.test")  # a+b is a mailbox of its own
    assert key("team+x@example.test") == key("team@example.test")
    assert key("postmaster") == key("PostMaster@example.test")
    # Remote local parts are the remote's business (RFC 5321 §2.4): only the domain folds.
    assert key("Bob@Remote.TEST") == "Bob@remote.test" != key("bob@remote.test")
    one, two = r.resolve("alice+1@example.test")[0], r.resolve("ALICE@example.test")[0]
    assert r.delivery_key(one) == r.delivery_key(two)


def test_two_targets_reaching_one_mailbox_give_one_route():
    r = make_router(
        {
            "list@example.test": (
                "alice+1@example.test",
                "alice+2@example.test",
                "Alice@example.test",
                "x@remote.test",
                "x@REMOTE.test",
            )
        }
    )
    assert r.resolve("list@example.test") == [
        local("alice+1@example.test", "alice"),
        Route.remote("x@remote.test", Nexthop("smtp", "remote.test")),
    ]
