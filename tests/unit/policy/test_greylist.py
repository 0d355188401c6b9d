"""Greylisting (policy/greylist.py) on a clock the test moves."""

from __future__ import annotations

from pigeon.config import load_config
from pigeon.policy.abusestate import AbuseState
from pigeon.policy.api import SessionFacts
from pigeon.policy.greylist import Greylisting
from pigeon.policy.relay import RelayNetworks
from pigeon.proto.params import RcptParams
from pigeon.vocab.address import Address

ALICE = Address("alice", "example.test")
BOB = Address("bob", "example.test")


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _greylist(**keys):
    settings = {"enabled": True, "delay": 300, "retry_window": 3600, "pass_lifetime": 86400}
    config = load_config(
        overrides={"relay_networks": ["10.0.0.0/8"], "greylist": {**settings, **keys}}
    )
    state, clock = AbuseState.memory(), Clock()
    check = Greylisting(
        config.greylist,
        state.table("greylist"),
        state.table("greylist-client"),
        RelayNetworks(config.relay_networks),
        clock=clock,
    )
    return check, clock


def _rcpt(check, ip="192.0.2.1", sender="joe@elsewhere.example", rcpt=ALICE, **facts):
    local, _, domain = sender.rpartition("@")
    session = SessionFacts(ip, sender=Address(local, domain) if sender else None, **facts)
    verdict = check.rcpt(session, rcpt, RcptParams())
    return None if verdict is None else verdict.reply


def test_first_attempt_waits_the_delay_then_the_retry_and_later_mail_pass():
    check, clock = _greylist(auto_allow_clients=0)
    first = _rcpt(check)
    assert (first.code, first.enhanced) == (450, "4.7.1") and "300 seconds" in first.lines[0]
    clock.now += 100
    assert "200 seconds" in _rcpt(check).lines[0]  # too soon: the time left
    clock.now += 200
    assert _rcpt(check) is None  # the retry passes
    clock.now += 80000
    assert _rcpt(check) is None  # and so does later mail of the triplet
    assert _rcpt(check, "192.0.2.200") is None  # from the same /24
    assert _rcpt(check, rcpt=BOB) is not None  # another triplet starts over
    assert _rcpt(check, "198.51.100.1") is not None  # another network too


def test_a_retry_after_the_window_or_a_triplet_unused_too_long_starts_over():
    check, clock = _greylist(auto_allow_clients=0)
    _rcpt(check)
    clock.now += 3601
    assert _rcpt(check) is not None  # retry window missed: greylisted again
    clock.now += 300
    assert _rcpt(check) is None
    clock.now += 86401
    assert _rcpt(check) is not None  # unused for pass_lifetime


def test_a_network_with_enough_passed_retries_is_not_greylisted_any_more():
    check, clock = _greylist(auto_allow_clients=2)
    for rcpt in (ALICE, BOB):
        _rcpt(check, rcpt=rcpt)
    clock.now += 300
    assert _rcpt(check, rcpt=ALICE) is None
    assert _rcpt(check, rcpt=BOB) is None  # the second pass: the network is allowed
    assert _rcpt(check, rcpt=Address("carol", "example.test")) is None


def test_exemptions():
    check, _ = _greylist(allow_clients=["198.51.100.0/24"], allow_domains=[".big.example"])
    assert _rcpt(check, "10.1.2.3") is None  # relay_networks
    assert _rcpt(check, user="alice") is None  # logged in
    assert _rcpt(check, role="submission") is None
    assert _rcpt(check, "198.51.100.7") is None
    assert _rcpt(check, sender="x@mail.big.example") is None
    assert _rcpt(check, sender="") is None  # the null sender
    assert _rcpt(check, sender="x@big.example") is not None  # ".big.example": subdomains only
