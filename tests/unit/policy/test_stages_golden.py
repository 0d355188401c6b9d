"""Golden decisions of the whole receive pipeline, stage by stage
(tests/unit/policy/golden/stages.in/.ref, CONTRIBUTING.md rule 13).

Each line of stages.in is "client user stage arguments" (user "-": not
logged in) and runs on a fresh connection of one pipeline (so counts carry
from line to line): `mail <sender> [SIZE=n]`, `rcpt <recipient>` (after
MAIL FROM:<>), `data <recipient>... [FULL]` (MAIL, each RCPT, then DATA:
the recipients as they would be queued; FULL: the disk filled up before
DATA) and `etrn node`. stages.ref holds
each line followed by " -> " and the answer. Regenerate after an intended
change with PIGEON_REGEN_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pigeon.config.schema import Config, DomainConfig, Limits
from pigeon.policy.api import Verdict
from pigeon.proto import reply as R
from pigeon.proto.params import MailParams, RcptParams
from pigeon.testing.policyprobe import PolicyProbe, address

GOLDEN = Path(__file__).parent / "golden"
ACCOUNTS = {"alice@example.test": ("alice@example.test", "sales@example.test")}
CONFIG = Config(
    hostname="mx.example.test",
    relay_networks=(ipaddress.ip_network("192.0.2.0/24"),),
    domains={
        "example.test": DomainConfig("example.test", frozenset({"alice", "bob"})),
        "open.test": DomainConfig("open.test"),
    },
    limits=Limits(new_mailboxes_per_hour=2),
)


class Room:
    """The queue file system with room for 1,000,000 octets, or none when full."""

    full = False

    def room_for(self, size: int = 0) -> bool:
        return not self.full and size <= 1_000_000


ROOM = Room()


def now(answer) -> Verdict:
    assert isinstance(answer, Verdict)
    return answer


def decide(probe: PolicyProbe, line: str) -> str:
    ip, user, stage, *args = line.split()
    size = next((int(a[5:]) for a in args if a.startswith("SIZE=")), None)
    ROOM.full = False
    fills = "FULL" in args  # the disk fills between RCPT and DATA
    args = [a for a in args if not a.startswith("SIZE=") and a != "FULL"]
    login = {} if user == "-" else {"user": user, "owned": ACCOUNTS[user]}
    session = probe.session(ip, **login)
    if stage == "etrn":
        return str(now(session.etrn(args[0])).reply or R.etrn_started(args[0]))
    params = MailParams(size=size)
    if stage == "mail":
        return str(now(session.mail(address(args[0]), params)).reply or R.SENDER_OK)
    refusal = now(session.mail(None, params)).reply
    assert refusal is None, refusal
    for rcpt in args:
        target = address(rcpt)
        assert target is not None
        refusal = now(session.rcpt(target, RcptParams())).reply
        if stage == "rcpt" or refusal is not None:
            return str(refusal or R.RECIPIENT_OK)
    ROOM.full = fills
    refusal = now(session.data()).reply
    if refusal is not None:
        return str(refusal)
    return "queued for " + ", ".join(str(a) for a, _ in session.facts.recipients)


def test_golden_stages():
    probe = PolicyProbe(CONFIG, clock=lambda: 1000.0, maildir_exists=lambda path: False, space=ROOM)
    lines = (GOLDEN / "stages.in").read_text().splitlines()
    got = "\n".join(
        line if not line.strip() or line.startswith("#") else f"{line} -> {decide(probe, line)}"
        for line in lines
    )
    ref = GOLDEN / "stages.ref"
    if os.environ.get("PIGEON_REGEN_GOLDEN"):
        ref.write_text(got + "\n")
    assert got + "\n" == ref.read_text()
