"""Forwarding in routing, dispatch and the RCPT check: who is rewritten, what
reverses, what is refused (routing/resolve.py, qmgr/dispatch.py, policy/srs.py).

The router is the real one, built from a Config with a real SrsCodec.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from pigeon.config.forwarding import SrsConfig
from pigeon.config.schema import Config, DomainConfig
from pigeon.forwarding.srs import SrsCodec
from pigeon.policy.api import SessionFacts
from pigeon.policy.srs import EXPIRED_SRS, FORGED_SRS, SrsRecipients
from pigeon.proto.params import RcptParams
from pigeon.qmgr.dispatch import dispatch
from pigeon.queue.model import Envelope, Recipient
from pigeon.routing.resolve import Router
from pigeon.testing.fakes import BytesContent
from pigeon.testing.policyprobe import PolicyProbe
from pigeon.testing.policyprobe import address as parse

DAY = 86400
NOW = 20_000 * DAY
AGENTS = frozenset({"smtp", "local", "lmtp", "discard"})
CONFIG = Config(
    hostname="mx.fwd.test",
    data_dir=Path("/srv/pigeon"),
    domains={
        "fwd.test": DomainConfig("fwd.test"),  # no mailbox list: any local part is a mailbox
        "other.test": DomainConfig("other.test", frozenset({"carol"})),
    },
    aliases={
        "list@fwd.test": ("bob@dest.test", "carol@other.test", "dan@far.test"),
        "fwd@fwd.test": ("bob@dest.test",),
    },
)


def codec() -> SrsCodec:
    return SrsCodec([b"secret"], "fwd.test")


@pytest.fixture
def router() -> Router:
    return Router(CONFIG, srs=codec())


def plan(router: Router, sender: str, *rcpts: str):
    env = Envelope("Q1", sender, [Recipient(r) for r in rcpts], size=10)
    return dispatch(env, router, BytesContent(b""), chunk=50, transports=AGENTS, now=NOW)


def by_domain(p):
    return {g.nexthop.domain: g.request for g in p.groups}


def test_forwarded_copies_get_the_srs_sender_and_are_marked(router):
    requests = by_domain(plan(router, "alice@origin.test", "list@fwd.test"))
    srs = codec().forward("alice@origin.test", NOW)
    assert requests["dest.test"].sender == srs and requests["dest.test"].forwarded
    assert requests["far.test"].sender == srs and requests["far.test"].forwarded
    # The copy for a local mailbox keeps the sender and is no forward.
    assert requests["other.test"].sender == "alice@origin.test"
    assert not requests["other.test"].forwarded


def test_mail_sent_straight_to_a_remote_address_is_no_forward(router):
    p = plan(router, "alice@origin.test", "fwd@fwd.test", "carl@dest.test")
    kinds = sorted((g.request.forwarded, g.request.sender) for g in p.groups)
    srs = codec().forward("alice@origin.test", NOW)
    # Same next hop, two requests: the client's own recipient, and the forwarded copy.
    assert kinds == [(False, "alice@origin.test"), (True, srs)]


@pytest.mark.parametrize("sender", ["", "me@fwd.test", "carol@OTHER.test", "x@FWD.test"])
def test_null_and_own_domain_senders_are_not_rewritten(router, sender):
    (group,) = plan(router, sender, "fwd@fwd.test").groups
    assert group.request.forwarded and group.request.sender == sender


def test_without_srs_forwarded_copies_keep_the_sender_but_are_still_marked():
    (group,) = plan(Router(CONFIG), "alice@origin.test", "fwd@fwd.test").groups
    assert group.request.forwarded and group.request.sender == "alice@origin.test"


def test_a_forwarded_srs0_sender_becomes_srs1(router):
    theirs = SrsCodec([b"x"], "first.test").forward("alice@origin.test", NOW)
    (group,) = plan(router, theirs, "fwd@fwd.test").groups
    assert group.request.sender.startswith("SRS1=")
    assert router.srs is not None and router.srs.reverse(group.request.sender, NOW) == theirs


def test_srs_address_routes_to_the_original_sender(router):
    srs = codec().forward("alice@origin.test", NOW)
    (route,) = router.resolve(srs)
    assert route.kind == "remote" and route.address == "alice@origin.test"
    assert router.is_alias(srs)


def test_forged_srs_address_is_no_mailbox_even_in_an_open_domain(router):
    forged = codec().forward("alice@origin.test", NOW).replace("=alice@", "=mallory@")
    assert not router.mailbox_exists(forged)
    assert router.mailbox_exists("anybody@fwd.test")
    # Without [srs], such a local part is just a local part.
    assert Router(CONFIG).mailbox_exists(forged)


def test_srs_form_in_another_domain_is_not_ours(router):
    other = SrsCodec([b"secret"], "other.test").forward("alice@origin.test", NOW)
    assert not router.is_srs_address(other) and router.srs_original(other) is None


def rcpt(check: SrsRecipients, address: str):
    target = parse(address)
    assert target is not None
    return check.rcpt(SessionFacts("192.0.2.9"), target, RcptParams())


def test_rcpt_check_refuses_forged_and_expired_and_passes_good(router):
    check = SrsRecipients(router, lambda: NOW + 3 * DAY)
    good = codec().forward("alice@origin.test", NOW)
    assert rcpt(check, good) is None
    forged = good.replace("=alice@", "=mallory@")
    assert rcpt(check, forged).reply == FORGED_SRS
    assert rcpt(check, "SRS0=zz@fwd.test").reply == FORGED_SRS
    old = codec().forward("alice@origin.test", NOW - 30 * DAY)
    assert rcpt(check, old).reply == EXPIRED_SRS
    assert rcpt(check, "alice@fwd.test") is None  # not its business


def test_pipeline_accepts_srs_bounce_from_a_stranger_and_refuses_forgeries():
    # srs.fwd.test is no local domain: the relay check must let good ones through.
    config = dataclasses.replace(CONFIG, srs=SrsConfig(enabled=True, domain="srs.fwd.test"))
    srs = SrsCodec([b"secret"], "srs.fwd.test")
    probe = PolicyProbe(config, router=Router(config, srs=srs))
    good = srs.forward("alice@origin.test", time.time())
    assert probe.rcpt(good, "192.0.2.9") is None
    forged = probe.rcpt(good.replace("=alice@", "=mallory@"), "192.0.2.9")
    assert forged == FORGED_SRS
    expired = probe.rcpt(srs.forward("alice@origin.test", time.time() - 30 * DAY), "192.0.2.9")
    assert expired == EXPIRED_SRS
    # Any other address of the SRS domain is no mail domain of ours: relay denied.
    other = probe.rcpt("postmaster@srs.fwd.test", "192.0.2.9")
    assert other is not None and other.code == 554
