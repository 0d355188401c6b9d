"""Recording delivery outcomes durably, and what the manager does when it cannot.

Contract:
  * A delivery run ends in a `Settlement` (qmgr/results.py): the envelope
    with its new recipient statuses, the log lines, the reports owed, and
    either "done" (remove the entry) or the time of the next attempt.
    `Journal.settle()` makes it durable in this order: reports enqueued,
    then the entry removed or updated to 'deferred'; only then the mail log
    lines (durable first: the log never says "sent" for a state a crash
    could roll back). Messages finishing together share one removal
    (delivery/batching.py): their rows in one transaction, then their
    files (the store's rule); each waits for its removal before it logs
    "removed". Reports are committed before the original is removed or
    updated: a crash may duplicate a report, never lose one.
  * Rule 1 (no stranded entry): every failure to write queue state (disk
    full, EIO, read-only file system, a failed fsync, or any other
    `StoreError`; the store never lets a backend exception through,
    pigeon/queue/api.py) leaves the entry owned by the manager, in memory:
      - an outcome that could not be written is kept (`Scheduler.unsaved`)
        and written again, from the step that failed, by the next storage
        retry round; reports already enqueued are not enqueued twice, and
        recipients already delivered are not delivered again;
      - an entry that could not be read or marked (load failed, the claim
        or the deferral failed) is kept as "to requeue": the retry round
        moves it from 'active' back to 'incoming' (due now) and a scan
        delivers it from what is on disk;
      - the sweep (every `run_interval`, and after each retry round that
        wrote everything) finds 'active' entries that no delivery, unsaved
        outcome or requeue owns and requeues them, without a restart. In a
        queue several nodes share only this node's claims are looked at
        (`own_active`, pigeon/store/pg/manager.py): another node's
        'active' entries are its deliveries (qmgr/leases.py).
  * Rule 2 (the storage back-off): qmgr/scheduler.py times the rounds:
    `store_retry` seconds after a failure, doubling while the store keeps
    failing, up to 16 x `store_retry`; a round that writes everything
    resets the delay. Local deliveries deferred because the Maildir storage
    failed (ENOSPC, EIO, EROFS) come back soon too, not after the ordinary
    backoff, and do not count as attempts.
  * Rule 3 (one line each way): storage faults go to the store's
    `StorageHealth` (queue/health.py), which logs the first fault of an
    episode and the recovery, once each, with no traceback; other write
    failures (not the storage: "database is locked") are logged one line
    each. While the queue storage is degraded, each round ends with the
    store's probe (`store.probe()`: a quarter MiB written and synced where
    the queue lives): the episode ends on that evidence (or on a commit of
    new mail), not on a small database update that may fit in space the
    database already holds, so a disk hovering at full does not log
    "recovered" and "failing" in turns; and the recovery is noticed, and
    logged, without new mail. While the Maildir storage is degraded, rounds
    probe the tmp/ of the last Maildir that failed the same way
    (delivery/local.py `MailboxStorage.probe`), or a delivery that succeeds
    ends it.
  * Counters and metrics follow the mail log: each line counted once it is
    durable; metrics get each recipient result (kind "local" or "remote")
    and the queue delay of each delivery; the plugins' delivery observers
    (`observers`, pigeon/hooks/events.py) get the same outcomes, as events
    "delivered", "deferred", "bounced" and "expired", after the log line
    (copies written at the accept too, qmgr/direct.py): `emit` only starts
    their tasks, so they never hold up the manager.

All blocking store calls run in worker threads (`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from pigeon.delivery.batching import ThreadBatcher
from pigeon.delivery.local import MailboxStorage
from pigeon.hooks.events import DeliveryEvent, DeliveryObservers, EventKind
from pigeon.qmgr.notify import Plan, enqueue_notice
from pigeon.qmgr.ports import Clock, MailLog, ManagerStore, Metrics
from pigeon.qmgr.results import LOCAL, LogLine, Settlement
from pigeon.qmgr.scheduler import Scheduler
from pigeon.queue.health import is_storage_fault
from pigeon.queue.model import Envelope
from pigeon.vocab import QueueState, StoreError

__all__ = [
    "STORE_ERRORS",
    "Counters",
    "Journal",
    "delivered_outcome",
    "log_outcome",
    "new_counters",
]

log = logging.getLogger("pigeon.queue")

#: What a store call raises when the store cannot do it (read or write);
#: OSError only for our own files (probe files).
STORE_ERRORS = (StoreError, OSError)

Counters = dict[str, int]

#: The mail log's status words, and "removed"/"notifications"/"errors".
_COUNTER_OF = {"sent": "delivered"}
#: The mail log's status word -> the plugins' delivery event.
_EVENT_OF: dict[str, EventKind] = {
    "sent": "delivered",
    "deferred": "deferred",
    "bounced": "bounced",
    "expired": "expired",
}


def delivered_outcome(
    env: Envelope, logs: list[LogLine], now: float, *, done: bool = True
) -> Settlement:
    """The outcome of copies written at the accept (qmgr/direct.py): no reports
    owed; `done` when no recipient is left for the queue."""
    return Settlement(env, logs, Plan([], []), done, 0.0, now)


def log_outcome(
    o: Settlement,
    maillog: MailLog,
    metrics: Metrics | None,
    counters: Counters,
    observers: DeliveryObservers | None = None,
) -> None:
    """Write the mail log lines of durable outcome `o` and count them (module
    contract: counters, metrics and the plugins' observers follow the mail log)."""
    env, logs, qid = o.env, o.logs, o.env.queue_id
    delay = round(max(0.0, o.now - env.received_at), 3) if env.received_at else 0.0
    if len(logs) > 1:
        order = {r.address: i for i, r in enumerate(env.recipients)}
        logs.sort(key=lambda fd: order.get(fd[0]["to"], 0))  # envelope order, not finish order
    for fields, detail in logs:
        fields["delay"] = delay
        word: str = fields["status"]
        key = _COUNTER_OF.get(word, word)
        counters[key] += 1
        maillog.log(qid, fields, detail)
        if observers:
            _tell(observers, o, fields, detail)
        if metrics is not None:
            kind = "local" if fields.get("relay") == LOCAL else "remote"
            metrics.recipient_result(key, kind)
            if key == "delivered":
                metrics.delivery_latency(delay)
    for notice, new_id in zip(o.plan.notices, o.new_ids):
        counters["notifications"] += 1
        maillog.log(qid, {}, f"{notice.log_text}: {new_id}")
    for remark in o.plan.remarks:
        maillog.log(qid, {}, remark)
    if o.done:
        counters["removed"] += 1
        maillog.log(qid, {"status": "removed"})


def _tell(observers: DeliveryObservers, o: Settlement, fields: dict[str, Any], detail: str) -> None:
    kind = _EVENT_OF.get(fields["status"])
    if kind is not None:
        relay, status = str(fields.get("relay", "")), str(fields.get("dsn", ""))
        to = (fields["to"],)
        observers.emit(
            DeliveryEvent(kind, o.env.queue_id, o.env.sender, to, relay, status, detail, o.now)
        )


def new_counters() -> Counters:
    return dict.fromkeys(
        ("delivered", "deferred", "bounced", "expired", "removed", "notifications", "errors"), 0
    )


class Journal:
    """Durable outcomes and the storage retry rounds; see the module contract."""

    def __init__(
        self,
        *,
        store: ManagerStore,
        sched: Scheduler,
        maillog: MailLog,
        metrics: Metrics | None,
        counters: Counters,
        clock: Clock,
        mailboxes: MailboxStorage,
        wake: Callable[[], None],
    ) -> None:
        self._store = store
        self._sched = sched
        self._maillog = maillog
        self._metrics = metrics
        self._counters = counters
        self._clock = clock
        self._mailboxes = mailboxes
        self._wake = wake
        #: Called with the id of an outcome a retry round made durable (an
        #: operator action may wait for it: qmgr/operator.py).
        self.on_late_settle: Callable[[str], None] = lambda qid: None
        self._removals: ThreadBatcher[str, None] = ThreadBatcher(self._remove_entries)
        #: The plugins told of each outcome once it is durable (Qmgr.set_observers).
        self.observers = DeliveryObservers()
        #: What DKIM-signs a delivery report before it is queued (Qmgr.set_notice_signer).
        self.sign_notice: Callable[[bytes], bytes] | None = None

    # --- one outcome ------------------------------------------------------------------

    async def settle(self, o: Settlement) -> bool:
        """Make `o` durable, then log it; on a store failure keep it (Rule 1).
        Returns True when it is durable."""
        qid = o.env.queue_id
        try:
            while len(o.new_ids) < len(o.plan.notices):
                notice = o.plan.notices[len(o.new_ids)]
                o.new_ids.append(
                    await asyncio.to_thread(
                        enqueue_notice, self._store, notice, o.now, self.sign_notice
                    )
                )
            if o.done:
                await self._removals.submit(qid)
            else:
                await asyncio.to_thread(self._store.update, o.env, QueueState.DEFERRED, o.when)
                self._sched.note_retry(o.when)
        except STORE_ERRORS as exc:
            self._sched.unsaved[qid] = o
            self.write_failed(exc, f"queue_id={qid}: cannot record the delivery result")
            return False
        self._sched.unsaved.pop(qid, None)
        if o.done:
            self._sched.removed(qid)
        self._log_outcome(o)
        return True

    def _remove_entries(self, ids: list[str]) -> list[None]:
        """Worker thread: remove many entries in one transaction (rows first,
        then files); all or none fail."""
        self._store.remove_many(ids)
        return [None] * len(ids)

    def _log_outcome(self, o: Settlement) -> None:
        """The mail log lines of a durable outcome (durable first: module contract)."""
        log_outcome(o, self._maillog, self._metrics, self._counters, self.observers)
        if o.new_ids:
            self._sched.nudge()  # the reports are new mail: a scan finds them
            self._wake()

    def log_delivered(
        self, env: Envelope, logs: list[LogLine], now: float, *, done: bool = True
    ) -> None:
        """The lines of copies written while the message was accepted
        (qmgr/direct.py), counted like any other outcome."""
        o = delivered_outcome(env, logs, now, done=done)
        log_outcome(o, self._maillog, self._metrics, self._counters, self.observers)

    def write_failed(self, exc: BaseException, what: str, requeue: Sequence[str] = ()) -> None:
        """A store call failed: note it (Rule 3), keep what it leaves (Rule 1),
        and make sure a retry round is coming (Rule 2)."""
        self._sched.requeue.update(requeue)
        if is_storage_fault(exc):
            self._store.health.failed(exc)
            log.debug("%s: %s", what, exc)
        else:
            self._counters["errors"] += 1
            log.error("%s: %s; retrying in %.0fs", what, exc, self._sched.storage_delay)
        self._sched.storage_failed(self._clock())
        self._wake()

    # --- the retry round --------------------------------------------------------------

    async def retry_round(self) -> None:
        """One retry round (Rules 1-3). Call with the operator lock held."""
        sched = self._sched
        sched.begin_storage_round()
        for qid, outcome in list(sched.unsaved.items()):
            if sched.unsaved.get(qid) is not outcome:
                continue  # settled meanwhile
            if not await self.settle(outcome):
                return  # still failing: write_failed planned the next round
            self.on_late_settle(qid)
        if sched.requeue and not await self.requeue_now():
            return
        queue = self._store.health
        if queue.degraded and not await self._probe_queue():
            return
        sched.storage_writes_ok()
        mailbox = self._mailboxes.health
        if mailbox.degraded:
            await asyncio.to_thread(self._mailboxes.probe)
        if queue.degraded or mailbox.degraded:
            # Writes work but the episode is not over (RECOVERY_QUIET), or
            # the Maildirs still fail: come back, so the end is noticed (and
            # logged) without new mail.
            sched.recheck_storage(self._clock(), queue.quiet)

    async def requeue_now(self) -> bool:
        """Move the entries to requeue from 'active' to 'incoming' (due now)."""
        ids = self._sched.to_requeue()
        try:
            moved = await asyncio.to_thread(
                self._store.move,
                ids,
                QueueState.INCOMING,
                self._clock(),
                from_states=(QueueState.ACTIVE,),
            )
        except STORE_ERRORS as exc:
            self.write_failed(exc, f"cannot requeue {len(ids)} entries")
            return False
        self._sched.requeued(ids)
        if moved:
            log.info(
                "requeued %d queue entries left active by a storage failure: %s",
                len(moved),
                " ".join(moved[:20]) + (" ..." if len(moved) > 20 else ""),
            )
        return True

    async def _probe_queue(self) -> bool:
        """Rule 3: the store's probe tells its health."""
        try:
            await asyncio.to_thread(self._store.probe)
        except STORE_ERRORS as exc:
            self.write_failed(exc, "storage probe")
            return False
        self._store.health.succeeded()
        return True

    async def sweep(self) -> None:
        """Rule 1: requeue 'active' entries nobody owns. Call with the operator lock held."""
        self._sched.sweep_needed = False
        try:
            # A shared queue: only this node's claims (issue 17); the other
            # nodes' 'active' entries are theirs, or their leases' to release.
            own = getattr(self._store, "own_active", None)
            ids = await asyncio.to_thread(own) if own is not None else None
            if ids is None:
                entries = await asyncio.to_thread(self._store.list, QueueState.ACTIVE)
                ids = [e.queue_id for e in entries]
        except STORE_ERRORS as exc:
            self.write_failed(exc, "queue sweep")
            self._sched.sweep_needed = True
            return
        if self._sched.lost(ids):
            await self.requeue_now()

    def storage_status(self) -> dict[str, Any]:
        """The storage state for status and metrics (any thread; one statvfs at most)."""
        return {
            "queue": self._store.health.snapshot(),
            "mailbox": self._mailboxes.health.snapshot(),
            "space": self._store.space.snapshot(),
            "unsaved": len(self._sched.unsaved),
            "requeue": len(self._sched.requeue),
        }
