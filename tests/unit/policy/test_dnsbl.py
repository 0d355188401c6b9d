"""DNSBL and RHSBL with weights and a threshold (policy/dnsbl.py), on zones in memory."""

from __future__ import annotations

import asyncio

import pytest

from pigeon.config import load_config
from pigeon.config._checks import ConfigError
from pigeon.policy.api import SessionFacts
from pigeon.policy.dnsbl import BlockLists, reversed_name
from pigeon.policy.relay import RelayNetworks
from pigeon.proto.params import MailParams
from pigeon.testing.fakedns import FakeResolver
from pigeon.vocab.address import Address

ZONES = {
    "bl.test": "9.2.0.192 A 127.0.0.2\n9.2.0.192 A 127.0.0.10\n8.2.0.192 A 127.0.0.99\n",
    "weak.test": "9.2.0.192 A 127.0.0.2\n7.2.0.192 A 127.0.0.2\n",
    "allow.test": "7.2.0.192 A 127.0.0.2\n",
    "dbl.test": "spam.example A 127.0.1.2\nhelo.spam.example A 127.0.1.2\n",
}


def _check(sites, rhsbl=(), threshold=1, resolver=None, relay=()):
    config = load_config(
        overrides={
            "relay_networks": list(relay),
            "dnsbl": {"sites": list(sites), "rhsbl_sites": list(rhsbl), "threshold": threshold},
        }
    )
    resolver = resolver or FakeResolver(ZONES)
    trusted = RelayNetworks(config.relay_networks)
    return BlockLists(config.dnsbl, resolver, trusted, clock=lambda: 0.0), resolver


def _mail(check, ip, sender=None, helo=None, user=None):
    facts = SessionFacts(ip, helo=helo, user=user)
    verdict = asyncio.run(check.mail(facts, sender, MailParams()))
    return None if verdict is None else verdict.reply


def test_query_names_are_reversed_octets_or_nibbles():
    assert reversed_name("192.0.2.9") == "9.2.0.192"
    assert reversed_name("2001:db8::1") == ".".join("1" + "0" * 23 + "8bd01002")
    assert reversed_name("not an ip") is None


def test_a_listed_client_is_refused_with_550_naming_the_list():
    check, resolver = _check(["bl.test"])
    reply = _mail(check, "192.0.2.9")
    assert (reply.code, reply.enhanced) == (550, "5.7.1")
    assert "client [192.0.2.9] blocked using bl.test" in reply.lines[0]
    assert ("9.2.0.192.bl.test", "A") in resolver.queries
    assert _mail(check, "192.0.2.1") is None  # NXDOMAIN: not listed


def test_filters_weights_and_the_threshold_decide_together():
    sites = ["bl.test=127.0.0.[2..11]*2", "weak.test*1", "allow.test*-5"]
    check, _ = _check(sites, threshold=3)
    assert _mail(check, "192.0.2.9") is not None  # 2 + 1 = 3
    assert _mail(check, "192.0.2.8") is None  # 127.0.0.99 fails the filter: 0
    assert _mail(check, "192.0.2.7") is None  # 1 - 5 < 3: allow-listed


def test_rhsbl_asks_for_the_sender_domain_and_the_helo_name():
    check, resolver = _check([], rhsbl=["dbl.test"])
    sender = Address("joe", "spam.example")
    assert _mail(check, "192.0.2.1", sender=sender).code == 550
    assert _mail(check, "192.0.2.1", Address("a", "good.example"), "helo.spam.example").code == 550
    assert _mail(check, "192.0.2.1", Address("a", "good.example"), "[192.0.2.1]") is None
    assert ("[192.0.2.1].dbl.test", "A") not in resolver.queries


def test_trusted_clients_are_not_asked_and_broken_lists_count_nothing():
    check, resolver = _check(["bl.test"], relay=["192.0.2.0/24"])
    assert _mail(check, "192.0.2.9") is None
    assert _mail(check, "198.51.100.1", user="alice") is None
    assert resolver.queries == []
    broken, _ = _check(["bl.test"], resolver=FakeResolver(ZONES, servfail={"bl.test"}))
    assert _mail(broken, "192.0.2.9") is None


def test_answers_are_cached():
    check, resolver = _check(["bl.test"])
    _mail(check, "192.0.2.9")
    _mail(check, "192.0.2.9")
    assert resolver.queries.count(("9.2.0.192.bl.test", "A")) == 1


@pytest.mark.parametrize(
    "entry",
    ["bl", "bl.test=127.0.0", "bl.test=127.0.0.[3..2]", "bl.test=127.0.0.300", "bl.test*x"],
)
def test_bad_site_entries_are_refused_naming_the_key(entry):
    with pytest.raises(ConfigError, match="dnsbl.sites"):
        load_config(overrides={"dnsbl": {"sites": [entry]}})
