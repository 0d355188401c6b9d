"""No stranded entry, whatever store call fails (qmgr/settle.py Rules 1-3).

Each test makes one of the manager's store calls fail (StoreError marked as
a storage fault, as the store raises for SQLITE_FULL/ENOSPC/EIO), through a
`FaultyStore` wrapper given to the manager (no store internals patched), or
makes the Maildir agent's batch writer fail, and runs the real manager loop
over a real QueueStore and Maildirs: the entry must end where a healthy run
would have put it, without a restart, with its delivery done once and its
log lines written once.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import sqlite3
import time
from pathlib import Path

import pytest
from qmgr_env import commit, make_qmgr, open_store, two_mailboxes

from pigeon.delivery.maildir import deliver_batch
from pigeon.queue.model import RecipientStatus
from pigeon.routing.resolve import Router
from pigeon.testing.fakes import FakeAgent, FakeReply, FaultyStore, RecordingMaillog
from pigeon.vocab import StoreError

FULL = StoreError("queue update: database or disk is full", disk_full=True)
REFUSED = FakeReply("4.4.1", "connect to mx.remote.test[192.0.2.9]:25: Connection refused")


class Env:
    def __init__(self, tmp: Path, **kw) -> None:
        self.cfg = two_mailboxes(tmp)
        self.store = open_store(self.cfg)
        self.faulty = FaultyStore(self.store)  # what the manager sees
        self.log = RecordingMaillog()
        self.agent = FakeAgent()
        self.opts = dict(run_interval=0.3, store_retry=0.02)
        self.opts.update(kw)
        self.build()

    def build(self, **kw) -> None:
        self.mgr = make_qmgr(
            self.cfg, self.faulty, self.log, agents={"smtp": self.agent}, **self.opts, **kw
        )

    def fail(self, name: str, times: int, exc: BaseException = FULL, **kw) -> None:
        self.faulty.fail(name, times, exc, **kw)

    def commit(self, *rcpts: str, sender: str = "sender@remote.test") -> str:
        return commit(self.store, *rcpts, sender=sender).queue_id

    def maildir(self, local: str) -> list[Path]:
        new = self.cfg.mailbox_root / "example.test" / local / "new"
        return sorted(new.iterdir()) if new.exists() else []

    def state(self, qid: str) -> str | None:
        entry = self.store.entry(qid)
        return entry.state if entry else None

    async def run_until(self, cond, timeout: float = 10.0, *, submit: tuple[str, ...] = ()):
        task = asyncio.create_task(self.mgr.run())
        deadline = time.monotonic() + timeout
        try:
            if submit:
                await asyncio.sleep(0.05)  # idle: the start-up scan is over
                self.mgr.submit(self.store.load(self.commit(*submit)))
            while not cond():
                assert time.monotonic() < deadline, (
                    f"condition not reached; queue {self.store.counts()}, "
                    f"statistics {self.mgr.statistics()}"
                )
                assert not task.done(), task
                await asyncio.sleep(0.01)
        finally:
            await self.mgr.stop()
            await task

    def run(self, cond, **kw) -> None:
        asyncio.run(self.run_until(cond, **kw))


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.store.close()


def test_a_deferral_that_cannot_be_written_is_written_later(env):
    """The issue: "could not defer" left the entry 'active' for good."""
    env.agent.start_err = REFUSED
    qid = env.commit("carol@remote.test")
    env.fail("update", 3)
    env.run(lambda: env.state(qid) == "deferred")
    assert env.faulty.count("update") == 4
    rcpt = env.store.load(qid).recipients[0]
    assert rcpt.status is RecipientStatus.DEFERRED and rcpt.dsn_status == "4.4.1"
    assert env.log.statuses(qid) == ["deferred"]  # logged once, once durable
    assert len(env.agent.requests) == 1  # not attempted again meanwhile


def test_a_removal_that_fails_is_retried_without_delivering_again(env):
    qid = env.commit("alice@example.test")
    env.fail("remove_many", 2)
    env.run(lambda: env.state(qid) is None)
    assert env.faulty.count("remove_many") == 3
    assert len(env.maildir("alice")) == 1
    assert env.log.statuses(qid) == ["sent", "removed"]
    assert env.mgr.statistics()["storage"]["unsaved"] == 0


def test_a_report_that_cannot_be_queued_is_queued_once_later(env):
    # alice is delivered; nobody (no such mailbox, 5.1.1) owes the sender a report.
    qid = env.commit("alice@example.test", "nobody@example.test")
    env.fail("commit", 2)  # the report's commit (the manager's intake)
    env.run(lambda: env.state(qid) is None)
    assert env.faulty.count("commit") == 3
    assert len(env.maildir("alice")) == 1  # not delivered again meanwhile
    notes = [c.detail for c in env.log.for_id(qid) if "notification" in (c.detail or "")]
    assert len(notes) == 1 and notes[0].startswith("sender non-delivery notification: ")
    env.run(lambda: env.agent.recipients() == ["sender@remote.test"])  # one report, sent


def test_fresh_mail_whose_start_fails_is_delivered(env):
    env.fail("claim", 2)
    env.run(
        lambda: (
            len(env.maildir("alice")) == 1
            and env.store.counts()["incoming"] == 0
            and not env.store.list()
        ),
        submit=("alice@example.test",),
    )
    assert env.faulty.count("claim") >= 3


def test_a_scan_whose_claim_fails_is_retried(env):
    qid = env.commit("alice@example.test")
    env.fail("claim", 2)
    env.run(lambda: env.state(qid) is None)
    assert env.faulty.count("claim") >= 3 and len(env.maildir("alice")) == 1


def test_a_claim_that_landed_despite_the_error_is_requeued(env):
    """An fsync error can leave it unknown whether the change was written."""
    qid = env.commit("alice@example.test")
    env.fail("claim", 1, StoreError("claim: disk I/O error", storage_fault=True), landed=True)
    env.run(lambda: env.state(qid) is None)
    assert env.faulty.calls["claim"][0][0] == [qid] and len(env.maildir("alice")) == 1


def test_an_entry_that_cannot_be_read_is_requeued_and_delivered(env):
    qid = env.commit("alice@example.test")
    env.fail("load", 3, StoreError("disk I/O error", storage_fault=True))
    env.run(lambda: env.state(qid) is None)
    assert env.faulty.count("load") >= 4 and len(env.maildir("alice")) == 1


def test_the_sweep_requeues_active_entries_nobody_owns(env):
    """No restart needed for an entry some failure left 'active'."""

    async def scenario():
        task = asyncio.create_task(env.mgr.run())
        await asyncio.sleep(0.1)  # idle, asleep for run_interval
        qid = env.commit("alice@example.test")
        env.store.claim([qid])  # stranded: no delivery owns it
        deadline = time.monotonic() + 10
        while env.state(qid) is not None:
            assert time.monotonic() < deadline, env.store.counts()
            await asyncio.sleep(0.02)
        await env.mgr.stop()
        await task
        return qid

    qid = asyncio.run(scenario())
    assert len(env.maildir("alice")) == 1
    assert env.log.statuses(qid) == ["sent", "removed"]


def test_recovery_that_fails_at_start_is_retried(env):
    qid = env.commit("alice@example.test")
    env.fail("recover", 2)
    env.run(lambda: env.state(qid) is None)
    assert env.faulty.count("recover") == 3


def test_a_bug_whose_deferral_fails_leaves_the_entry_to_the_manager(env, caplog):
    qid = env.commit("alice@example.test")

    class BrokenOnce(Router):
        broken = False

        def resolve(self, *args, **kwargs):
            if not BrokenOnce.broken:
                BrokenOnce.broken = True
                raise RuntimeError("a bug")
            return super().resolve(*args, **kwargs)

    env.mgr.set_router(BrokenOnce(env.cfg))
    env.fail("move", 1)  # the deferral after the bug
    env.run(lambda: env.state(qid) is None)
    assert BrokenOnce.broken and len(env.maildir("alice")) == 1
    assert env.faulty.calls["move"][0][:2] == ([qid], "deferred")  # the failed deferral


def test_storage_faults_log_once_each_way_without_traceback(env, caplog):
    caplog.set_level(logging.DEBUG, logger="pigeon.queue")
    env.store.health.quiet = 0.5
    ids = [env.commit("alice@example.test") for _ in range(5)]
    env.fail("remove_many", 4)  # one episode: four failed rounds
    env.run(lambda: all(env.state(q) is None for q in ids) and not env.store.health.degraded)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "queue storage failing: queue update: database or disk is full; "
        "writes are retried until it recovers"
    ]
    assert sum("queue storage recovered" in r.getMessage() for r in caplog.records) == 1
    assert not [r for r in caplog.records if r.exc_info]
    assert len(env.maildir("alice")) == 5


def test_a_fault_seen_by_the_smtp_side_is_probed_until_it_recovers(env, caplog):
    """A failed commit degrades the queue; the manager, asleep, is woken and
    its probe notices (and logs) the recovery without any new mail."""
    caplog.set_level(logging.INFO, logger="pigeon.queue")
    env.store.health.quiet = 0.2

    async def scenario():
        task = asyncio.create_task(env.mgr.run())
        await asyncio.sleep(0.1)  # idle, asleep for run_interval
        await asyncio.to_thread(
            env.store.health.failed, OSError(errno.ENOSPC, "No space left on device")
        )
        deadline = time.monotonic() + 10
        while env.store.health.degraded:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await env.mgr.stop()
        await task

    asyncio.run(scenario())
    assert sum("queue storage recovered" in r.getMessage() for r in caplog.records) == 1


def test_a_store_error_that_is_not_the_disk_is_retried_and_logged(env, caplog):
    qid = env.commit("alice@example.test")
    env.fail("remove_many", 1, StoreError("queue remove: database is locked"))
    env.run(lambda: env.state(qid) is None)
    assert any(
        "database is locked" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR
    )
    assert not env.store.health.episodes and env.mgr.statistics()["errors"] == 1


# --- Maildir storage faults -------------------------------------------------------------


def maildir_failing(env: Env, err: OSError, times: int) -> list[int]:
    """A manager whose Maildir agent's next `times` batches fail with `err`
    (the agent's batch writer, injected)."""
    real, calls = functools.partial(deliver_batch, fsync=False), []

    def write(jobs):
        calls.append(len(jobs))
        if len(calls) <= times:
            return [(time.time(), time.time(), err) for _ in jobs]
        return real(jobs)

    env.build(writer=write)
    return calls


def test_a_full_mailbox_disk_is_deferred_4_3_1_and_retried_soon(env):
    qid = env.commit("alice@example.test")
    calls = maildir_failing(env, OSError(errno.ENOSPC, "No space left on device"), 2)
    env.run(lambda: env.state(qid) is None)
    assert len(calls) == 3 and len(env.maildir("alice")) == 1
    lines = env.log.for_id(qid)
    assert [c.fields["dsn"] for c in lines if c.fields.get("status") == "deferred"] == [
        "4.3.1",
        "4.3.1",
    ]
    assert "mail system full" in lines[0].detail
    # Retried after the short storage back-off (not min_backoff, 300 s).


def test_an_io_error_in_a_maildir_is_retried_soon_and_marks_mailboxes_degraded(env):
    qid = env.commit("alice@example.test")
    calls = maildir_failing(env, OSError(errno.EIO, "Input/output error"), 1)
    env.run(lambda: env.state(qid) is None)
    assert len(calls) == 2
    assert env.mgr.mailbox_health.episodes == 1
    assert env.log.for_id(qid)[0].fields["dsn"] == "4.3.0"


def test_a_maildir_fault_ends_with_one_line_without_new_mail(env, caplog):
    """The retried delivery succeeds at once, sooner than RECOVERY_QUIET; a
    probe in that Maildir's tmp/ ends the episode later, with no new mail."""
    caplog.set_level(logging.INFO, logger="pigeon.queue")
    env.mgr.mailbox_health.quiet = 0.3
    qid = env.commit("alice@example.test")
    maildir_failing(env, OSError(errno.ENOSPC, "No space left on device"), 1)
    env.run(lambda: env.state(qid) is None and not env.mgr.mailbox_health.degraded)
    lines = [r.getMessage() for r in caplog.records if "mailbox storage" in r.getMessage()]
    assert len(lines) == 2 and lines[0].startswith("mailbox storage failing: No space left")
    assert lines[1].startswith("mailbox storage recovered")
    assert not list((env.cfg.mailbox_root / "example.test" / "alice" / "tmp").iterdir())


def test_a_mailbox_over_quota_waits_the_ordinary_backoff_and_is_never_a_bounce(env):
    qid = env.commit("alice@example.test")
    maildir_failing(env, OSError(errno.EDQUOT, "Disk quota exceeded"), 1)
    env.run(lambda: env.state(qid) == "deferred")
    entry = env.store.entry(qid)
    assert entry.next_attempt - time.time() > 200  # min_backoff 300 s, jitter
    rcpt = entry.envelope.recipients[0]
    assert (rcpt.status, rcpt.dsn_status) == (RecipientStatus.DEFERRED, "4.2.2")
    assert entry.envelope.attempts == 1
    assert env.mgr.mailbox_health.episodes == 0  # the mailbox's quota, not our disk


def test_a_mailbox_still_over_quota_at_expiry_bounces_5_2_2(tmp_path):
    env = Env(tmp_path, max_lifetime=0.0)
    try:
        qid = env.commit("alice@example.test")
        maildir_failing(env, OSError(errno.EDQUOT, "Disk quota exceeded"), 1)
        env.run(lambda: env.state(qid) is None)
        bounced = [c for c in env.log.for_id(qid) if c.fields.get("status") == "expired"]
        assert [c.fields["dsn"] for c in bounced] == ["5.2.2"]
    finally:
        env.store.close()


# --- next hops that come back (qmgr/waiting.py) ----------------------------------------


def hop_comes_back(env: Env, meanwhile) -> None:
    """Three messages deferred (4.4.1) for one next hop; `meanwhile()` runs,
    the hop comes back (and `meanwhile` may send new mail); every message
    must then leave the queue."""
    env.agent.start_err = REFUSED
    waiting = [env.commit(f"u{i}@remote.test") for i in range(3)]

    async def scenario():
        task = asyncio.create_task(env.mgr.run())
        while not all(env.state(q) == "deferred" for q in waiting):
            await asyncio.sleep(0.01)
        more = await meanwhile()
        deadline = time.monotonic() + 10
        while not all(env.state(q) is None for q in [*waiting, *more]):
            assert time.monotonic() < deadline, env.store.counts()
            await asyncio.sleep(0.01)
        await env.mgr.stop()
        await task

    asyncio.run(scenario())


def test_mail_waiting_for_a_next_hop_is_retried_when_a_delivery_gets_through(tmp_path):
    # Not dead after three failures, no probes: this is about Rule 2 alone.
    env = Env(tmp_path, probe_interval=3600.0, destination_failure_limit=100)

    async def back_with_new_mail():
        env.agent.start_err = None
        fresh = env.commit("new@remote.test")
        env.mgr.nudge()
        return [fresh]

    try:
        hop_comes_back(env, back_with_new_mail)
        # min_backoff is 300 s: only the "hop is back" rule brought them back.
        assert sorted(env.agent.recipients()).count("u0@remote.test") == 2
    finally:
        env.store.close()


def test_a_next_hop_that_comes_back_is_found_by_a_probe(tmp_path):
    env = Env(tmp_path, probe_interval=0.2, destination_failure_limit=1)
    probes = []

    async def probed_then_back():
        tried = len(env.agent.requests)
        await asyncio.sleep(0.5)  # probes: one request per interval
        probes.append(len(env.agent.requests) - tried)
        env.agent.start_err = None  # back, and no new mail comes
        return []

    try:
        hop_comes_back(env, probed_then_back)
        assert 1 <= probes[0] <= 4  # one message per probe, not all
    finally:
        env.store.close()


def test_a_sqlite_error_of_the_store_itself_counts_as_a_storage_fault(env):
    from pigeon.queue.health import is_storage_fault

    try:
        raise sqlite3.OperationalError("database or disk is full")
    except sqlite3.OperationalError as exc:
        plain = exc
    assert not is_storage_fault(plain)  # no error code: not provable
    assert is_storage_fault(OSError(errno.ENOSPC, "full"))
    assert is_storage_fault(StoreError("x", storage_fault=True))
    assert not is_storage_fault(OSError(errno.EACCES, "denied"))
