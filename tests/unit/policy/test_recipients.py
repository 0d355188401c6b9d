"""Recipient checks of the receive pipeline: golden .in/.ref decision files
(CONTRIBUTING.md, rule 13) plus edge cases.

tests/unit/policy/golden/recipients.in: each line is "client_ip recipient"
('#' comments and blank lines are copied through); recipients.ref holds the
same lines followed by " -> " and the reply (the 250 2.1.5 RECIPIENT_OK for
an accept). The pipeline of CONFIG answers (policy.build: RelayControl,
LocalRecipients, RecipientMailboxLimit), as it does for an SMTP session.
Regenerate after an intended change with PIGEON_REGEN_GOLDEN=1 and review
the diff.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from pigeon.config.schema import Config, DomainConfig
from pigeon.policy.recipients import RecipientMerge
from pigeon.policy.relay import RelayNetworks
from pigeon.proto import reply as R
from pigeon.routing.resolve import Router
from pigeon.testing.policyprobe import PolicyProbe
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


def run_golden(lines: list[str]) -> list[str]:
    policy = PolicyProbe(CONFIG)
    out = []
    for line in lines:
        if not line.strip() or line.startswith("#"):
            out.append(line)
            continue
        ip, rcpt = line.split()
        verdict = policy.rcpt(rcpt, ip) or R.RECIPIENT_OK
        out.append(f"{line} -> {verdict}")
    return out


@pytest.mark.parametrize("case", ["recipients"])
def test_golden(case):
    lines = (GOLDEN / f"{case}.in").read_text().splitlines()
    got = "\n".join(run_golden(lines)) + "\n"
    ref = GOLDEN / f"{case}.ref"
    if os.environ.get("PIGEON_REGEN_GOLDEN"):
        ref.write_text(got)
    assert got == ref.read_text()


def test_senders_outside_list_less_local_domains_are_accepted():
    policy = PolicyProbe(CONFIG)
    assert policy.mail("<>", "203.0.113.9") is None
    assert policy.mail("<x@anywhere.test>", "not-an-ip") is None
    assert policy.mail("<x@example.test>", "203.0.113.9") is None


def test_relay_networks_edge_cases():
    networks = RelayNetworks(CONFIG.relay_networks)
    assert networks.contains("::ffff:192.0.2.7")  # v4-mapped from a dual-stack socket
    assert networks.contains("2001:db8::1%eth0")
    assert not networks.contains("")
    assert not networks.contains("garbage")


def test_authenticated_clients_may_relay_but_local_checks_stay():
    from pigeon.config import load_config

    config = load_config(None, {"domains": {"example.test": {"mailboxes": ["alice"]}}})
    policy = PolicyProbe(config)
    assert policy.rcpt("x@elsewhere.example", "192.0.2.9") == R.RELAY_DENIED
    assert policy.rcpt("x@elsewhere.example", "192.0.2.9", user="alice@example.test") is None
    assert (
        policy.rcpt("nobody@example.test", "192.0.2.9", user="alice@example.test") == R.UNKNOWN_USER
    )


def test_repeated_recipients_merge_keeping_the_first_with_its_parameters():
    from pigeon.proto.params import RcptParams

    merge = RecipientMerge(Router(CONFIG))
    first, later = RcptParams(notify=("NEVER",)), RcptParams(notify=("SUCCESS",))
    got = merge.merged(
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
