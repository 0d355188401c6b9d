"""qmgr/dispatch.py: envelope + router -> requests by next hop, without I/O.

The router is the real one (pure: built from a Config); the content is an
in-memory handle that records whether anybody opened it (nobody may).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pigeon.config.schema import Config, DomainConfig
from pigeon.proto.params import RcptParams
from pigeon.qmgr.dispatch import dispatch, expand_aliases
from pigeon.queue.model import Envelope, Recipient, RecipientStatus
from pigeon.routing.resolve import Router
from pigeon.testing.fakes import BytesContent
from pigeon.vocab import Nexthop

ROOT = Path("/srv/pigeon")
AGENTS = frozenset({"smtp", "local", "lmtp", "discard"})


@pytest.fixture
def router() -> Router:
    return Router(
        Config(
            hostname="mx.example.test",
            data_dir=ROOT,
            domains={
                "example.test": DomainConfig("example.test", frozenset({"alice", "bob"})),
                "open.test": DomainConfig("open.test"),
            },
            aliases={
                "team@example.test": ("alice@example.test", "bob@example.test"),
                "ghost@example.test": ("nobody@example.test",),
                "@open.test": ("alice@example.test",),
            },
        )
    )


def envelope(*rcpts: str | Recipient) -> Envelope:
    rs = [r if isinstance(r, Recipient) else Recipient(r) for r in rcpts]
    return Envelope("Q1", "s@src.test", rs, size=123, eight_bit=True)


def plan(env: Envelope, router: Router, *, chunk: int = 50, transports=AGENTS):
    content = BytesContent(b"never read")
    out = dispatch(env, router, content, chunk=chunk, transports=transports, now=1000)
    assert content.opened == 0
    return out


def test_fifty_remote_recipients_are_one_request_and_more_are_chunked(router):
    one = plan(envelope(*[f"u{i}@remote.test" for i in range(50)]), router)
    assert [len(g.recipients) for g in one.groups] == [50]
    req = one.groups[0].request
    assert req.nexthop == Nexthop("smtp", "remote.test")
    assert (req.queue_id, req.sender, req.size, req.eight_bit) == ("Q1", "s@src.test", 123, True)
    many = plan(envelope(*[f"u{i}@remote.test" for i in range(120)]), router)
    assert [len(g.recipients) for g in many.groups] == [50, 50, 20]
    two = plan(envelope("a@one.test", "b@two.test", "c@one.test"), router)
    assert {g.nexthop.domain: [r.address for r in g.recipients] for g in two.groups} == {
        "one.test": ["a@one.test", "c@one.test"],
        "two.test": ["b@two.test"],
    }


def test_local_recipients_of_a_domain_are_one_request_whatever_the_chunk(router):
    env = envelope(*[f"u{i}@open.test" for i in range(3)], "bob@example.test", "x@remote.test")
    out = plan(env, router, chunk=1)
    by_hop = {g.nexthop: g.request.recipients for g in out.groups}
    assert set(by_hop) == {Nexthop("local", "example.test"), Nexthop("smtp", "remote.test")}
    # The catch-all sends every open.test address to alice: merged into one copy.
    alice, bob = by_hop[Nexthop("local", "example.test")]
    assert alice.mailbox == ROOT / "mailboxes" / "example.test" / "alice"
    assert bob.mailbox == ROOT / "mailboxes" / "example.test" / "bob"
    assert (bob.delivered_to, bob.original_to) == ("bob@example.test", "")


def test_a_local_copy_knows_its_maildir_and_the_address_before_the_alias(router):
    out = plan(envelope("Someone@open.test"), router)
    (group,) = out.groups
    (rcpt,) = group.request.recipients
    assert rcpt.address == "alice@example.test"  # the expansion, a recipient of its own
    assert rcpt.mailbox == ROOT / "mailboxes" / "example.test" / "alice"
    assert (rcpt.delivered_to, rcpt.original_to) == ("alice@example.test", "Someone@open.test")
    assert group.recipients[0].original == "Someone@open.test"


def test_aliases_expand_once_and_duplicates_merge(router):
    env = envelope("team@example.test", "alice@example.test", "ALICE@example.test")
    out = plan(env, router)
    assert [(r.address, r.original) for r in env.recipients] == [
        ("alice@example.test", "team@example.test"),
        ("bob@example.test", "team@example.test"),
    ]
    (group,) = out.groups
    assert [r.address for r in group.recipients] == ["alice@example.test", "bob@example.test"]
    # A retry does not expand again: the expansions are recipients of their own.
    again = expand_aliases(env, router)
    assert [r.address for r in env.recipients] == ["alice@example.test", "bob@example.test"]
    assert set(again) == {"alice@example.test", "bob@example.test"}


def test_the_first_of_merged_recipients_keeps_its_dsn_parameters(router):
    first = Recipient("alice@example.test", RcptParams(notify=("NEVER",)))
    env = envelope(first, Recipient("Alice@example.test", RcptParams(notify=("SUCCESS",))))
    plan(env, router)
    assert env.recipients == [first]


def test_a_missing_local_mailbox_bounces_here_with_its_log_line(router):
    env = envelope("ghost@example.test", "x@remote.test")
    out = plan(env, router)
    ghost = env.recipients[0]
    assert (ghost.address, ghost.original) == ("nobody@example.test", "ghost@example.test")
    assert (ghost.status, ghost.dsn_status, ghost.action) == (
        RecipientStatus.BOUNCED,
        "5.1.1",
        "failed",
    )
    assert (ghost.transport, ghost.last_attempt) == ("local", 1000)
    ((fields, detail),) = out.logs
    assert fields == {
        "to": "nobody@example.test",
        "orig_to": "ghost@example.test",
        "relay": "local",
        "delay": 0.0,
        "dsn": "5.1.1",
        "status": "bounced",
    }
    assert detail == "no such local mailbox"
    assert [g.nexthop.transport for g in out.groups] == ["smtp"]


def test_a_transport_without_agent_defers_430(router):
    env = envelope("x@remote.test", "alice@example.test")
    out = plan(env, router, transports={"local"})
    remote = env.recipients[0]
    assert (remote.status, remote.dsn_status) == (RecipientStatus.DEFERRED, "4.3.0")
    assert remote.diagnostic == "mail transport unavailable: no delivery agent for transport smtp"
    assert out.logs[0][0]["relay"] == "none" and out.logs[0][0]["status"] == "deferred"
    assert [g.nexthop.transport for g in out.groups] == ["local"]


def test_final_recipients_are_left_alone(router):
    done = Recipient("x@remote.test", status=RecipientStatus.DELIVERED)
    env = envelope(done, "y@remote.test")
    out = plan(env, router)
    assert [r.address for g in out.groups for r in g.recipients] == ["y@remote.test"]
    assert env.recipients[0] is done


def test_a_route_chosen_by_a_check_overrides_the_routing_of_that_recipient(router):
    routed = Recipient("team@example.test", route="smtp:[127.0.0.1]:10025")
    out = plan(envelope(routed, "alice@example.test"), router)
    hops = {g.nexthop: [r.address for r in g.recipients] for g in out.groups}
    # Not alias-expanded (team@ would be alice@ and bob@), not merged with alice@.
    assert hops[Nexthop("smtp", "example.test", "127.0.0.1", 10025, False)] == ["team@example.test"]
    assert [a for h, a in hops.items() if h.transport == "local"] == [["alice@example.test"]]


def test_a_route_survives_the_envelope_round_trip():
    env = envelope(Recipient("a@remote.test", route="discard"))
    assert Envelope.from_dict(env.to_dict()).recipients[0].route == "discard"
    assert "route" not in Recipient("b@remote.test").to_dict()  # unchanged when unused


def test_a_folder_route_puts_local_copies_in_that_maildir_folder_and_leaves_others_alone(router):
    # A receive check's "local:.Junk" (the DMARC quarantine, policy/mailauth):
    # local recipients get the Maildir++ folder, remote ones are routed as usual.
    junk = [Recipient(a, route="local:.Junk") for a in ("bob@example.test", "x@remote.test")]
    out = plan(envelope(*junk), router)
    by_hop = {g.nexthop: g.request.recipients for g in out.groups}
    (bob,) = by_hop[Nexthop("local", "example.test")]
    assert bob.mailbox == ROOT / "mailboxes" / "example.test" / "bob" / ".Junk"
    assert bob.delivered_to == "bob@example.test"
    (remote,) = by_hop[Nexthop("smtp", "remote.test")]
    assert remote.mailbox is None
    # A damaged route (no valid folder) is the inbox, never a path outside the Maildir.
    out = plan(envelope(Recipient("bob@example.test", route="local:../../etc")), router)
    (bob,) = out.groups[0].request.recipients
    assert bob.mailbox == ROOT / "mailboxes" / "example.test" / "bob"
