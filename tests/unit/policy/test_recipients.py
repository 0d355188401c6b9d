"""RecipientPolicy: golden .in/.ref decision files (CONTRIBUTING.md, rule 13) plus edge cases.

Each tests/unit/policy/golden/NAME.in line is "client_ip recipient" ('#'
comments and blank lines are copied through); NAME.ref holds the same lines
followed by " -> " and the reply (the 250 2.1.5 RECIPIENT_OK for an accept).
Regenerate after an intended change with PIGEON_REGEN_GOLDEN=1 and review
the diff.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from pigeon.config.schema import Config, DomainConfig
from pigeon.policy.recipients import RecipientPolicy
from pigeon.proto import reply as R
from pigeon.routing.resolve import Router
from pigeon.vocab.address import Address

GOLDEN = Path(__file__).parent / "golden"

CONFIG = Config(
    hostname="mx.example.test",
    relay_networks=(ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32")),
    domains={
        "example.test": DomainConfig("example.test", frozenset({"alice", "bob"})),
        "open.test": DomainConfig("open.test"),
    },
    aliases={"info@example.test": ("alice@example.test", "carol@remote.test")},
)


def parse_recipient(text: str) -> Address:
    text = text.strip("<>")
    local, at, domain = text.rpartition("@")
    return Address(local, domain) if at else Address(text, "")


def run_golden(lines: list[str]) -> list[str]:
    policy = RecipientPolicy(CONFIG, Router(CONFIG))
    out = []
    for line in lines:
        if not line.strip() or line.startswith("#"):
            out.append(line)
            continue
        ip, rcpt = line.split()
        verdict = policy.check_recipient(parse_recipient(rcpt), ip) or R.RECIPIENT_OK
        out.append(f"{line} -> {verdict}")
    return out


@pytest.mark.parametrize("case", sorted(p.stem for p in GOLDEN.glob("*.in")))
def test_golden(case):
    lines = (GOLDEN / f"{case}.in").read_text().splitlines()
    got = "\n".join(run_golden(lines)) + "\n"
    ref = GOLDEN / f"{case}.ref"
    if os.environ.get("PIGEON_REGEN_GOLDEN"):
        ref.write_text(got)
    assert got == ref.read_text()


def test_sender_always_accepted():
    policy = RecipientPolicy(CONFIG, Router(CONFIG))
    assert policy.check_sender(None, "203.0.113.9") is None
    assert policy.check_sender(Address("x", "anywhere.test"), "not-an-ip") is None


def test_relay_networks_edge_cases():
    policy = RecipientPolicy(CONFIG, Router(CONFIG))
    assert policy.client_may_relay("::ffff:192.0.2.7")  # v4-mapped from a dual-stack socket
    assert policy.client_may_relay("2001:db8::1%eth0")
    assert not policy.client_may_relay("")
    assert not policy.client_may_relay("garbage")


def test_authenticated_clients_may_relay_but_local_checks_stay():
    from pigeon.config import load_config
    from pigeon.policy.recipients import RecipientPolicy
    from pigeon.routing.resolve import Router
    from pigeon.vocab.address import Address

    config = load_config(None, {"domains": {"example.test": {"mailboxes": ["alice"]}}})
    policy = RecipientPolicy(config, Router(config))
    remote = Address("x", "elsewhere.example")
    assert policy.check_recipient(remote, "192.0.2.9") is not None
    assert policy.check_recipient(remote, "192.0.2.9", authenticated=True) is None
    assert (
        policy.check_recipient(Address("nobody", "example.test"), "192.0.2.9", authenticated=True)
        is not None
    )


def test_repeated_recipients_merge_keeping_the_first_with_its_parameters():
    from pigeon.proto.params import RcptParams

    policy = RecipientPolicy(CONFIG, Router(CONFIG))
    first, later = RcptParams(notify=("NEVER",)), RcptParams(notify=("SUCCESS",))
    got = policy.merge_recipients(
        [
            (Address("alice", "example.test"), first),
            (Address("ALICE", "example.test"), later),
            (Address("alice+x", "example.test"), later),
            (Address("bob", "example.test"), later),
            (Address("Carol", "remote.test"), first),
            (Address("carol", "remote.test"), later),
            (Address("postmaster", ""), first),
            (Address("postmaster", "example.test"), later),
        ]
    )
    assert [(str(a), p) for a, p in got] == [
        ("alice@example.test", first),
        ("bob@example.test", later),
        ("Carol@remote.test", first),
        ("carol@remote.test", later),
        ("postmaster", first),
    ]
