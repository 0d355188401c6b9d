"""Recipients at RCPT time and at delivery agree, and repeated recipients are merged.

Real QueueStore, real Maildirs, the real receive pipeline and Router: the
RCPT verdict of every address is compared with what the queue manager then
does with it (delivered or bounced), and messages naming one mailbox many
ways land in it once.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from pigeon.config.schema import Config, DomainConfig
from pigeon.proto.params import RcptParams
from pigeon.qmgr import Qmgr
from pigeon.qmgr.dispatch import expand_aliases
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.store import QueueStore
from pigeon.routing.resolve import Router
from pigeon.testing.fakes import RecordingMaillog, run_manager_until
from pigeon.testing.policyprobe import PolicyProbe
from pigeon.vocab.address import parse_path

ADDRESSES = [
    "alice@example.test",
    "ALICE+news@example.test",
    "carol@example.test",
    "carol+x@example.test",
    "team@example.test",
    "team+x@example.test",
    "ghost@example.test",
    "root@example.test",
    "root+cron@open.test",
    "staff@example.test",
    "postmaster@example.test",
    "postmaster",
    "anyone@open.test",
    "x+y@open.test",
    "who@catch.test",
    "keep@catch.test",
    "keep+z@catch.test",
    "dead@catch.test",
    "+lead@example.test",
]


def make_config(tmp_path: Path) -> Config:
    return Config(
        hostname="mx.example.test",
        data_dir=tmp_path,
        domains={
            "example.test": DomainConfig("example.test", frozenset({"alice", "bob"})),
            "open.test": DomainConfig("open.test"),
            "catch.test": DomainConfig("catch.test", frozenset({"keep", "inbox"})),
        },
        aliases={
            "team@example.test": ("alice@example.test", "bob@example.test"),
            "ghost@example.test": ("nobody@example.test",),
            "dead@catch.test": ("nobody@example.test",),
            "@catch.test": ("inbox@catch.test",),
        },
        local_aliases={"root": ("alice",), "staff": ("\\nobody", "root")},
    )


def commit(store: QueueStore, rcpts: list[str]) -> str:
    sp = store.new_spool()
    sp.write(b"Received: by mx.example.test\r\nSubject: t\r\n\r\nhi\r\n")
    store.commit(
        sp,
        Envelope(
            sp.queue_id, "s@remote.test", [Recipient(r) for r in rcpts], received_at=time.time()
        ),
    )
    return sp.queue_id


async def deliver_all(mgr: Qmgr, log: RecordingMaillog, ids: list[str]) -> None:
    await run_manager_until(mgr, lambda: all("removed" in log.statuses(q) for q in ids), 20.0)


@pytest.fixture
def world(tmp_path, queue_world):
    cfg = make_config(tmp_path)
    return (cfg, *queue_world(cfg))


def maildir_count(cfg: Config) -> dict[str, int]:
    return {
        str(p.parent.relative_to(cfg.mailbox_root)): len(list(p.iterdir()))
        for p in cfg.mailbox_root.glob("*/*/new")
    }


def test_rcpt_verdict_agrees_with_delivery(world):
    cfg, store, log, mgr = world
    policy = PolicyProbe(cfg)
    verdicts = {a: policy.rcpt(a, "192.0.2.1") for a in ADDRESSES}
    ids = {
        a: commit(store, [str(parse_path(f"<{a}>", allow_null=False, smtputf8=False))])
        for a in ADDRESSES
    }
    asyncio.run(deliver_all(mgr, log, list(ids.values())))
    for address, qid in ids.items():
        delivered = "sent" in log.statuses(qid)
        assert (verdicts[address] is None) == delivered, (
            address,
            verdicts[address],
            log.statuses(qid),
        )
    assert verdicts["carol@example.test"].code == 550  # sanity: both kinds occur
    assert verdicts["ghost@example.test"].code == 550  # alias to nowhere: refused now


def test_one_message_reaches_each_mailbox_once(world):
    cfg, store, log, mgr = world
    rcpts = ["alice@example.test"] * 50 + [
        "ALICE@Example.test",
        "alice+1@example.test",
        "alice+2@example.test",
        "team@example.test",
        "team+x@example.test",
        "root@example.test",
        "root@open.test",
        "Root+x@open.test",
    ]
    qid = commit(store, rcpts)
    asyncio.run(deliver_all(mgr, log, [qid]))
    assert maildir_count(cfg) == {
        "example.test/alice": 1,
        "example.test/bob": 1,
        "open.test/alice": 1,
    }
    sent = [c.fields["to"] for c in log.for_id(qid) if c.fields.get("status") == "sent"]
    assert sent == ["alice@example.test", "bob@example.test", "alice@open.test"]


def test_the_first_of_merged_recipients_keeps_its_dsn_parameters(world):
    cfg, store, log, mgr = world
    sp = store.new_spool()
    sp.write(b"Subject: t\r\n\r\nhi\r\n")
    first = RcptParams(notify=("NEVER",))
    env = Envelope(
        sp.queue_id,
        "s@remote.test",
        [
            Recipient("team@example.test", first),
            Recipient("alice@example.test", RcptParams(notify=("SUCCESS",))),
        ],
        received_at=time.time(),
    )
    expand_aliases(env, Router(cfg))
    assert [(r.address, r.params.notify, r.original) for r in env.recipients] == [
        ("alice@example.test", ("NEVER",), "team@example.test"),
        ("bob@example.test", ("NEVER",), "team@example.test"),
    ]
    sp.discard()


def test_catch_all_copy_records_the_original_recipient(world):
    cfg, store, log, mgr = world
    qid = commit(store, ["who@catch.test"])
    asyncio.run(deliver_all(mgr, log, [qid]))
    [copy] = list((cfg.mailbox_root / "catch.test" / "inbox" / "new").iterdir())
    assert copy.read_bytes().startswith(
        b"Return-Path: <s@remote.test>\n"
        b"X-Original-To: who@catch.test\n"
        b"Delivered-To: inbox@catch.test\n"
    )


def test_extension_is_kept_in_delivered_to(world):
    cfg, store, log, mgr = world
    qid = commit(store, ["Alice+News@example.test"])
    asyncio.run(deliver_all(mgr, log, [qid]))
    [copy] = list((cfg.mailbox_root / "example.test" / "alice" / "new").iterdir())
    assert b"\nDelivered-To: alice+news@example.test\n" in copy.read_bytes()
