"""Recording delivery results durably, and what the manager does when it cannot.

These are `QueueManager` methods (the class inherits `Settling`), kept in
their own module for size: the manager stays the single owner of queue state.

Contract:
  * A delivery run ends in a `Settlement`: the envelope with its new
    recipient statuses, the log lines, the reports owed, and either "done"
    (remove the entry) or the time of the next attempt. `_settle()` makes it
    durable in this order: reports enqueued, then the entry removed or
    updated to 'deferred'; only then the mail log lines (durable first).
  * Rule 1 (no stranded entry): every failure to write queue state (disk
    full, EIO, read-only file system, SQLITE_FULL, a failed fsync, or any
    other store error) leaves the entry owned by the manager, in memory:
      - an outcome that could not be written is kept (`_unsaved`) and
        written again, from the step that failed, by the next storage
        retry round; reports already enqueued are not enqueued twice, and
        recipients already delivered are not delivered again;
      - an entry that could not be read or marked (load failed, the move to
        'active' or the deferral failed) is kept as "to requeue": the
        retry round moves it from 'active' back to 'incoming' (due now) and
        a scan delivers it from what is on disk;
      - the sweep (every `run_interval`, and after each retry round that
        wrote everything) finds 'active' entries that no delivery, unsaved
        outcome or requeue owns and requeues them, without a restart.
  * Rule 2 (the storage back-off): retry rounds start `store_retry` seconds
    after a failure and double while the store keeps failing, up to
    16 x `store_retry`; a round that writes everything resets the delay.
    Local deliveries deferred because the Maildir storage failed (ENOSPC,
    EIO, EROFS) come back soon too, not after the ordinary backoff, and do
    not count as attempts: `store_retry` at first, then a quarter of the
    fault's age so far, at most 16 x `store_retry`.
  * Rule 3 (one line each way): storage faults go to the store's
    `StorageHealth` (queue/health.py), which logs the first fault of an
    episode and the recovery, once each, with no traceback; other write
    failures (not the storage: "database is locked") are logged one line
    each. While the queue storage is degraded, each round ends by writing
    and fsyncing a probe file (PROBE_SIZE) in the queue's tmp/: the episode
    ends on that evidence (or on a commit of new mail), not on a small
    database update that may fit in space SQLite already holds, so a disk
    hovering at full does not log "recovered" and "failing" in turns; and
    the recovery is noticed, and logged, without new mail. While the
    Maildir storage is degraded, rounds probe the tmp/ of the last Maildir
    that failed the same way (or a delivery that succeeds ends it).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pigeon.fsutil import PROBE_SIZE, write_probe
from pigeon.queue.health import StorageHealth, is_storage_fault
from pigeon.queue.model import Envelope
from pigeon.queue.notify import Plan, enqueue_notice
from pigeon.queue.store import StoreError

if TYPE_CHECKING:
    from pigeon.queue.manager import QueueManager

__all__ = ["Settlement", "Settling", "STORE_ERRORS", "PROBE_SIZE"]

log = logging.getLogger("pigeon.queue")

#: What a store call raises when the store cannot do it (read or write).
STORE_ERRORS = (StoreError, OSError, sqlite3.Error)

#: Rule 2: the storage back-off grows up to this many times `store_retry`.
BACKOFF_CAP = 16


@dataclass(slots=True, eq=False)
class Settlement:
    """The end of one delivery run, until it is durable (module contract)."""

    env: Envelope
    logs: list[tuple[dict, str]]
    plan: Plan
    done: bool
    when: float  # next attempt when not done
    now: float  # when the run ended (reports carry it)
    new_ids: list[str] = field(default_factory=list)  # reports enqueued so far


class Settling:
    """Mixed into QueueManager; see the module contract."""

    def _init_settling(self: QueueManager, store_retry: float) -> None:
        self._store_retry = store_retry
        self._storage_delay = store_retry  # Rule 2, current
        self._storage_due: float | None = None  # next retry round
        self._held_until = 0.0  # no scans/starts before (a failure)
        self._unsaved: dict[str, Settlement] = {}  # Rule 1
        self._requeue: set[str] = set()  # Rule 1
        self._sweep_needed = False
        self._mailbox_probe_dir: Path | None = None  # tmp/ of a Maildir that failed

    # --- one outcome ------------------------------------------------------------------

    async def _settle(self: QueueManager, o: Settlement) -> bool:
        """Make `o` durable, then log it; on a store failure keep it (Rule 1).
        Returns True when it is durable."""
        qid = o.env.queue_id
        try:
            while len(o.new_ids) < len(o.plan.notices):
                notice = o.plan.notices[len(o.new_ids)]
                o.new_ids.append(
                    await asyncio.to_thread(enqueue_notice, self._store, notice, o.now)
                )
            if o.done:
                await self._remove(qid)
            else:
                await asyncio.to_thread(self._store.update, o.env, "deferred", o.when)
                self._note_retry(o.when)
        except STORE_ERRORS as exc:
            self._unsaved[qid] = o
            self._write_failed(exc, f"queue_id={qid}: cannot record the delivery result")
            return False
        self._unsaved.pop(qid, None)
        if o.done:
            self._waiters.forget(qid)
        self._log_outcome(o)
        return True

    def _log_outcome(self: QueueManager, o: Settlement) -> None:
        """The mail log lines of a durable outcome (durable first: module Rule)."""
        env, logs, qid = o.env, o.logs, o.env.queue_id
        delay = round(max(0.0, o.now - env.received_at), 3) if env.received_at else 0.0
        order = {r.address: i for i, r in enumerate(env.recipients)}
        logs.sort(key=lambda fd: order.get(fd[0]["to"], 0))  # envelope order, not finish order
        for fields, detail in logs:
            fields["delay"] = delay
            key = {"sent": "delivered"}.get(fields["status"], fields["status"])
            self._counters[key] += 1
            self._maillog.log(qid, fields, detail)
            if self._metrics is not None:
                kind = "local" if fields.get("relay") == "local" else "remote"
                self._metrics.recipient_result(key, kind)
                if key == "delivered":
                    self._metrics.delivery_latency(delay)
        for notice, new_id in zip(o.plan.notices, o.new_ids):
            self._counters["notifications"] += 1
            self._maillog.log(qid, {}, f"{notice.log_text}: {new_id}")
        for remark in o.plan.remarks:
            self._maillog.log(qid, {}, remark)
        if o.done:
            self._counters["removed"] += 1
            self._maillog.log(qid, {"status": "removed"})
        if o.new_ids:
            self.nudge()

    def _write_failed(
        self: QueueManager, exc: BaseException, what: str, requeue: list[str] | tuple[str, ...] = ()
    ) -> None:
        """A store call failed: note it (Rule 3), keep what it leaves (Rule 1),
        and make sure a retry round is coming (Rule 2)."""
        self._requeue.update(requeue)
        if is_storage_fault(exc):
            self._store.health.failed(exc)
            log.debug("%s: %s", what, exc)
        else:
            self._counters["errors"] += 1
            log.error("%s: %s; retrying in %.0fs", what, exc, self._storage_delay)
        if self._storage_due is None:
            self._storage_due = self._clock() + self._storage_delay
            self._storage_delay = min(self._storage_delay * 2, self._store_retry * BACKOFF_CAP)
        # No scan or start until then: they would fail the same way.
        self._held_until = max(self._held_until, self._storage_due)
        self._wake.set()

    async def _recover(self: QueueManager) -> None:
        """store.recover(), retried with the storage back-off while the store fails."""
        while not self._stopping:
            try:
                report = await asyncio.to_thread(self._store.recover)
            except STORE_ERRORS as exc:
                self._write_failed(exc, "queue recovery failed")
                self._storage_due = None  # this loop is the retry
                self._wake.clear()  # stop() sets it again
                try:
                    await asyncio.wait_for(self._wake.wait(), self._storage_delay)
                except TimeoutError:
                    pass
                self._wake.clear()
                continue
            self._storage_delay, self._held_until = self._store_retry, 0.0
            log.info(
                "queue recovered: %d entries, %d reactivated, %d corrupt",
                report.queued,
                len(report.reactivated),
                len(report.missing_content),
            )
            return

    # --- the retry round --------------------------------------------------------------

    def _storage_retry_due(self: QueueManager, now: float) -> bool:
        return self._storage_due is not None and now >= self._storage_due

    def _mailbox_retry_at(self: QueueManager, now: float) -> float:
        """Rule 2 for Maildir storage faults: soon at first, a quarter of the
        episode's age later on, at most the back-off cap."""
        since = self.mailbox_health.since
        age = now - since if since is not None else 0.0
        return now + min(max(self._store_retry, age / 4), self._store_retry * BACKOFF_CAP)

    async def _retry_storage(self: QueueManager) -> None:
        """One retry round (Rules 1-3). Call with the operator lock held."""
        self._storage_due = None
        for qid, outcome in list(self._unsaved.items()):
            if self._unsaved.get(qid) is not outcome:
                continue  # settled meanwhile
            if not await self._settle(outcome):
                return  # still failing: _write_failed scheduled the next
            if qid in self._pending_actions:
                self._after_delivery_soon(qid)
        if self._requeue and not await self._requeue_now():
            return
        queue = self._store.health
        if queue.degraded and not await self._probe(queue, self._store.root / "tmp"):
            return
        self._storage_delay = self._store_retry
        self._sweep_needed = True  # entries a failure left 'active' (Rule 1)
        mailbox = self.mailbox_health
        if mailbox.degraded and self._mailbox_probe_dir is not None:
            await self._probe(mailbox, self._mailbox_probe_dir)
        if queue.degraded or mailbox.degraded:
            # Writes work but the episode is not over (RECOVERY_QUIET), or
            # the Maildirs still fail: come back, so the end is noticed (and
            # logged) without new mail.
            self._storage_due = self._clock() + max(self._store_retry, queue.quiet)

    async def _requeue_now(self: QueueManager) -> bool:
        """Move the entries to requeue from 'active' to 'incoming' (due now)."""
        # A delivery, or an outcome waiting to be written, owns those.
        self._requeue.difference_update(self._inflight, self._unsaved.keys())
        ids = sorted(self._requeue)
        try:
            moved = await asyncio.to_thread(
                self._store.move, ids, "incoming", self._clock(), from_states=("active",)
            )
        except STORE_ERRORS as exc:
            self._write_failed(exc, f"cannot requeue {len(ids)} entries")
            return False
        self._requeue.difference_update(ids)
        if moved:
            log.info(
                "requeued %d queue entries left active by a storage failure: %s",
                len(moved),
                " ".join(moved[:20]) + (" ..." if len(moved) > 20 else ""),
            )
        self._scan_needed = True  # rows already 'incoming' are found by due() too
        return True

    async def _probe(self: QueueManager, health: StorageHealth, directory: Path) -> bool:
        """Rule 3: a probe file written and fsynced in `directory` (the
        queue's tmp/, or the tmp/ of a Maildir that failed) tells `health`."""
        try:
            await asyncio.to_thread(write_probe, directory, self._fsync)
        except OSError as exc:
            if health is self._store.health:
                self._write_failed(exc, "storage probe")
            elif is_storage_fault(exc):
                health.failed(exc)
            else:
                self._mailbox_probe_dir = None  # that Maildir is gone: a delivery decides
            return False
        health.succeeded()
        return True

    async def _sweep(self: QueueManager) -> None:
        """Rule 1: requeue 'active' entries nobody owns. Call with the operator lock held."""
        self._sweep_needed = False
        try:
            entries = await asyncio.to_thread(self._store.list, "active")
        except STORE_ERRORS as exc:
            self._write_failed(exc, "queue sweep")
            self._sweep_needed = True
            return
        owned = self._inflight | self._unsaved.keys() | self._requeue
        lost = [e.queue_id for e in entries if e.queue_id not in owned]
        if lost:
            self._requeue.update(lost)
            await self._requeue_now()

    def _after_delivery_soon(self: QueueManager, qid: str) -> None:
        """Run an operator action that waited for `qid`'s result (operator.py)."""
        task = asyncio.get_running_loop().create_task(self._after_delivery_logged(qid))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _after_delivery_logged(self: QueueManager, qid: str) -> None:
        try:
            await self._after_delivery(qid)
        except Exception:
            log.exception("queue_id=%s: operator action after delivery failed", qid)
