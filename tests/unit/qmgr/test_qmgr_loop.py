"""The queue manager end to end over a real QueueStore and Maildirs in a temp dir (the run loop)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from qmgr_env import make_qmgr

from pigeon.config.schema import Config, DomainConfig
from pigeon.qmgr.results import NO_AGENT
from pigeon.queue.model import Envelope, Recipient, RecipientStatus
from pigeon.queue.store import QueueStore
from pigeon.testing.fakes import FaultyStore, run_manager_until


def make_config(tmp_path: Path) -> Config:
    return Config(
        hostname="mx.example.test",
        data_dir=tmp_path,
        domains={"example.test": DomainConfig("example.test", frozenset({"alice", "bob"}))},
        aliases={
            "team@example.test": ("alice@example.test", "bob@example.test"),
            "ghost@example.test": ("nobody@example.test",),
        },
    )


def commit(store: QueueStore, *rcpts: str, sender: str = "sender@remote.test") -> str:
    sp = store.new_spool()
    sp.write(
        b"Received: by mx.example.test\r\nSubject: " + sp.queue_id.encode() + b"\r\n\r\nhi\r\n"
    )
    store.commit(
        sp, Envelope(sp.queue_id, sender, [Recipient(r) for r in rcpts], received_at=time.time())
    )
    return sp.queue_id


def maildir_files(cfg: Config, local: str) -> list[Path]:
    new = cfg.mailbox_root / "example.test" / local / "new"
    return sorted(new.iterdir()) if new.exists() else []


run_until = run_manager_until


@pytest.fixture
def setup(tmp_path, queue_world):
    cfg = make_config(tmp_path)
    return (cfg, *queue_world(cfg, run_interval=30.0))


def test_local_aliased_and_remote(setup):
    cfg, store, log, mgr = setup
    q_local = commit(store, "alice@example.test")
    q_alias = commit(store, "team@example.test")
    q_remote = commit(store, "carol@remote.test", sender="")

    asyncio.run(
        run_until(
            mgr,
            lambda: (
                "removed" in log.statuses(q_alias)
                and "removed" in log.statuses(q_local)
                and log.for_id(q_remote)
            ),
        )
    )

    alice, bob = maildir_files(cfg, "alice"), maildir_files(cfg, "bob")
    assert len(alice) == 2 and len(bob) == 1
    assert (
        bob[0]
        .read_bytes()
        .startswith(
            b"Return-Path: <sender@remote.test>\nX-Original-To: team@example.test\n"
            b"Delivered-To: bob@example.test\nReceived:"
        )
    )
    # Delivered messages are gone; the remote one waits in 'deferred'.
    # (no "smtp" agent given: the remote recipient is deferred 4.3.0)
    assert [e.queue_id for e in store.list()] == [q_remote]
    entry = store.list("deferred")[0]
    assert entry.next_attempt >= time.time() + 20
    assert entry.envelope.recipients[0].status is RecipientStatus.DEFERRED
    assert entry.envelope.recipients[0].diagnostic.startswith(NO_AGENT)
    assert entry.envelope.recipients[0].dsn_status == "4.3.0"
    # Log lines: per recipient, with orig_to for the alias expansion.
    sent = [c.fields for c in log.for_id(q_alias) if c.fields["status"] == "sent"]
    assert sent == [
        {
            "to": "alice@example.test",
            "orig_to": "team@example.test",
            "relay": "local",
            "delay": sent[0]["delay"],
            "dsn": "2.0.0",
            "status": "sent",
            "delays": sent[0]["delays"],
        },
        {
            "to": "bob@example.test",
            "orig_to": "team@example.test",
            "relay": "local",
            "delay": sent[1]["delay"],
            "dsn": "2.0.0",
            "status": "sent",
            "delays": sent[1]["delays"],
        },
    ]
    assert list(sent[0]) == ["to", "orig_to", "relay", "delay", "dsn", "status", "delays"]
    # queue wait / connection setup (none for a Maildir) / transmission
    wait, setup, write = (float(x) for x in sent[0]["delays"].split("/"))
    assert setup == 0.0 and wait >= 0.0 and write >= 0.0
    assert log.for_id(q_alias)[0].detail == "delivered to maildir"
    assert log.statuses(q_remote) == ["deferred"]
    stats = mgr.statistics()
    assert stats["delivered"] == 3 and stats["queue"]["deferred"] == 1


def test_duplicate_via_alias_and_direct_is_delivered_once(setup):
    cfg, store, log, mgr = setup
    qid = commit(store, "team@example.test", "alice@example.test")
    asyncio.run(run_until(mgr, lambda: "removed" in log.statuses(qid)))
    assert len(maildir_files(cfg, "alice")) == 1 and len(maildir_files(cfg, "bob")) == 1


def test_alias_to_missing_mailbox_bounces(setup):
    cfg, store, log, mgr = setup
    qid = commit(store, "ghost@example.test")
    asyncio.run(run_until(mgr, lambda: "removed" in log.statuses(qid)))
    assert log.for_id(qid)[0].fields["dsn"] == "5.1.1"
    assert log.statuses(qid) == ["bounced", "", "removed"]
    assert log.for_id(qid)[1].detail.startswith("sender non-delivery notification: ")
    # The bounce is a new queue entry from <> to the original sender.
    (bounce,) = store.list()
    assert bounce.envelope.sender == "" and bounce.envelope.dsn_kind == "failure"
    assert [r.address for r in bounce.envelope.recipients] == ["sender@remote.test"]


def test_local_error_defers_with_backoff_then_recovers(setup):
    cfg, store, log, mgr = setup
    # A file where alice's Maildir directory should be: delivery fails (ENOTDIR).
    blocker = cfg.mailbox_root / "example.test" / "alice"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")
    qid = commit(store, "alice@example.test", "bob@example.test")
    asyncio.run(run_until(mgr, lambda: "deferred" in log.statuses(qid)))
    e = store.list("deferred")[0]
    assert e.envelope.attempts == 1
    by_addr = {r.address: r for r in e.envelope.recipients}
    assert by_addr["bob@example.test"].status is RecipientStatus.DELIVERED
    assert by_addr["alice@example.test"].status is RecipientStatus.DEFERRED
    assert "maildir delivery failed" in by_addr["alice@example.test"].diagnostic
    # Fix the cause and make it due: only alice is delivered this time.
    blocker.unlink()
    store.move([qid], "deferred", 0, from_states=("deferred",))
    mgr2 = make_qmgr(cfg, store, log)
    asyncio.run(run_until(mgr2, lambda: "removed" in log.statuses(qid)))
    assert len(maildir_files(cfg, "alice")) == 1 and len(maildir_files(cfg, "bob")) == 1


def test_interrupted_delivery_is_redone_after_restart(setup):
    cfg, store, log, mgr = setup
    qid = commit(store, "alice@example.test")
    store.claim([qid])  # as if we crashed mid-delivery
    asyncio.run(run_until(mgr, lambda: "removed" in log.statuses(qid)))
    assert len(maildir_files(cfg, "alice")) == 1


def test_corrupt_entry_does_not_stop_the_loop(setup, tmp_path):
    import sqlite3

    cfg, store, log, mgr = setup
    bad = commit(store, "alice@example.test")
    good = commit(store, "bob@example.test")
    db = sqlite3.connect(cfg.queue_dir / "queue.db")
    db.execute("UPDATE queue SET envelope='[]' WHERE queue_id=?", (bad,))
    db.commit()
    db.close()
    asyncio.run(run_until(mgr, lambda: "removed" in log.statuses(good)))
    assert store.counts()["corrupt"] == 1


def test_many_messages_with_concurrency(setup):
    cfg, store, log, mgr = setup
    ids = [commit(store, "alice@example.test") for _ in range(40)]
    asyncio.run(run_until(mgr, lambda: all("removed" in log.statuses(q) for q in ids)))
    assert len(maildir_files(cfg, "alice")) == 40
    assert store.list() == []


def test_nudge_wakes_a_sleeping_manager(setup):
    cfg, store, log, mgr = setup

    async def scenario():
        task = asyncio.create_task(mgr.run())
        await asyncio.sleep(0.2)  # now asleep for run_interval (30 s)
        qid = await asyncio.to_thread(commit, store, "bob@example.test")
        mgr.nudge()
        t0 = time.monotonic()
        while "removed" not in log.statuses(qid):
            assert time.monotonic() - t0 < 5
            await asyncio.sleep(0.01)
        await mgr.stop()
        await task

    asyncio.run(scenario())


def test_store_failure_during_a_scan_does_not_end_the_manager(setup):
    """A disk-full or EIO error from the store while choosing due mail is
    retried; the queue storage counts as degraded (one episode, not errors
    of the manager), which keeps running and delivers afterwards."""
    cfg, store, log, _ = setup
    faulty = FaultyStore(store)
    faulty.fail("due", 2)  # disk full
    mgr = make_qmgr(cfg, faulty, log, run_interval=30.0, store_retry=0.05)
    qid = commit(store, "alice@example.test")
    asyncio.run(run_until(mgr, lambda: "removed" in log.statuses(qid)))
    assert faulty.count("due") >= 3 and store.health.episodes == 1
    assert len(maildir_files(cfg, "alice")) == 1
