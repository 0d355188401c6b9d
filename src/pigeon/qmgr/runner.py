"""The queue manager: the single owner of queue state (Postfix qmgr), its event loop.

    qmgr = build_qmgr(config, store, router, agents, maillog, metrics)   # qmgr/wiring.py
    qmgr.submit(envelope)        # the SMTP side, right after the 250
    await qmgr.run()             # until stop()

Contract:
  * Only the manager changes queue state: it uses the queue interfaces
    (pigeon/queue/api.py), always from worker threads because those calls
    wait for fsync. The SMTP side only commits new messages and then calls
    `submit(envelope)` (same process) or `nudge()` (worker processes, local
    submission). Agents return results and never touch the store.
  * This module is the asyncio part, kept thin: the loop, the fast path,
    the scan's worker-thread call, the exception fences. What to start and
    when to wake is the scheduler's (qmgr/scheduler.py, pure); a delivery
    run is qmgr/attempt.py (dispatch.py, results.py: pure); durable outcomes
    and storage faults are qmgr/settle.py; operator actions qmgr/operator.py.
  * `run()` first recovers the store (retried with the storage back-off
    while it fails), then loops: start work, then sleep until woken
    (`submit`, `nudge`, a delivery ending) or until `sleep_time()`. Starting
    work takes the operator lock (operator.py Rule 1) and has two paths:
      - Fast path (fresh mail): `submit()` keeps the committed Envelope in
        the scheduler's FIFO and wakes the manager, which takes every
        envelope waiting there (up to the free slots), claims their rows
        from 'incoming' to 'active' in ONE conditional transaction
        (`store.claim`), and delivers each one claimed from the object in
        hand: no due(), no load(), no JSON parsing. The claim keeps two
        promises: a crash duplicates only entries that were 'active' (as on
        the scan path; recovery redoes them), and the database judges every
        race: a row a scan took already, or that an operator held, deleted
        or bounced before its submit() arrived, is no longer 'incoming' and
        is skipped.
      - Scan (the database), only when the scheduler says so: `due()`
        entries (fair between new and deferred mail) are claimed and their
        envelopes loaded, all in one worker-thread call (qmgr/scan.py; a
        shared queue claims them with `claim_due()` in one transaction).
  * A shared queue (issue 17): while `run()` runs, qmgr/leases.py renews
    the leases of this node's deliveries and releases expired ones every
    lease/3; deliveries hold cluster-wide destination slots too.
  * Nothing escapes the loop: a corrupt entry is quarantined by the store
    and skipped; an entry that cannot be read is requeued (settle.py Rule
    1); an unexpected exception while delivering one message is logged
    (with its traceback: a bug) and the message is deferred by
    `run_interval`. A failing store never ends the manager: it waits for
    the next storage retry round.
  * `stop()` starts nothing new, waits for deliveries in flight, and gives
    outcomes a failed write left in memory a last chance. `abandon()` is
    the stop pigeon makes (app/lifecycle.py): it starts nothing new,
    cancels every delivery in progress at once, one mail-log line each
    (qmgr/inflight.py), and leaves every entry where it is for the
    recovery of the next start (the outcomes left in memory too).
  * Metrics (optional) are told each recipient result once durable; the
    statistics are a snapshot for `pigeon status`.

Delivery is at-least-once: a crash between a delivery and the following
update delivers that recipient again after restart. Exactly-once would
need a per-recipient journal fsync before every delivery; a rare duplicate
is the standard MTA trade-off (Postfix makes the same one).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from pigeon.delivery.api import DeliveryAgent
from pigeon.delivery.local import MailboxStorage
from pigeon.hooks.events import DeliveryObservers
from pigeon.qmgr.attempt import Attempts
from pigeon.qmgr.capture import CaptureActions
from pigeon.qmgr.clusterlimit import ClusterLimit
from pigeon.qmgr.direct import DirectDelivery, DirectOutcome
from pigeon.qmgr.leases import keep_leases
from pigeon.qmgr.operator import ActionResult, OperatorActions
from pigeon.qmgr.ports import (
    Clock,
    MailLog,
    ManagerStore,
    Metrics,
    Rng,
    cluster_slots,
    shared_claims,
)
from pigeon.qmgr.scan import ScanFailed, scan_db
from pigeon.qmgr.scheduler import Scheduler
from pigeon.qmgr.settings import QmgrSettings
from pigeon.qmgr.settle import STORE_ERRORS, Journal, new_counters
from pigeon.queue.health import StorageHealth, is_storage_fault
from pigeon.queue.model import Envelope
from pigeon.routing.resolve import Router
from pigeon.vocab import CorruptEntry, QueueState, StoreError

__all__ = ["Qmgr"]

log = logging.getLogger("pigeon.queue")


class Qmgr:
    """Moves committed messages to their destinations; see the module contract."""

    def __init__(
        self,
        store: ManagerStore,
        router: Router,
        agents: Mapping[str, DeliveryAgent],
        settings: QmgrSettings = QmgrSettings(),
        *,
        maillog: MailLog,
        clock: Clock = time.time,
        rng: Rng | None = None,
        metrics: Metrics | None = None,
        mailboxes: MailboxStorage | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._clock = clock
        self._sched = Scheduler(settings)
        self._wake = asyncio.Event()
        self._stopping = False
        self._abandoned = False  # abandon(): what is left is recovery's
        self._maillog = maillog
        self._running = False
        self._stopped = asyncio.Event()
        self._counters = new_counters()
        self._started_at = clock()
        self._mailboxes = mailboxes if mailboxes is not None else MailboxStorage()
        self._journal = Journal(
            store=store,
            sched=self._sched,
            maillog=maillog,
            metrics=metrics,
            counters=self._counters,
            clock=clock,
            mailboxes=self._mailboxes,
            wake=self._wake.set,
        )
        self._attempts = Attempts(
            store=store,
            router=router,
            agents=dict(agents),
            sched=self._sched,
            journal=self._journal,
            mailboxes=self._mailboxes,
            settings=settings,
            clock=clock,
            rng=rng if rng is not None else random.Random(),
            wake=self._wake.set,
        )
        #: A queue several nodes share (issue 17): claims with leases, kept by
        #: qmgr/leases.py; cluster-wide destination slots (qmgr/clusterlimit.py).
        self._shared = shared_claims(store)
        if (slots := cluster_slots(store)) is not None:
            self._attempts.cluster = ClusterLimit(slots, settings.destination_concurrency)
        self._operator = OperatorActions(
            store=store,
            sched=self._sched,
            maillog=maillog,
            clock=clock,
            finish=self._attempts.finish,
            nudge=self.nudge,
        )
        self._journal.on_late_settle = self._operator.after_delivery_soon
        lock, submit = self._operator.lock, self.submit
        self.capture = CaptureActions(
            store=store, lock=lock, maillog=maillog, clock=clock, submit=submit
        )
        #: Local delivery at the accept (qmgr/direct.py) with this manager's
        #: Maildir agent, counters and metrics; None when turned off.
        self.direct: DirectDelivery | None = None

    # --- control ------------------------------------------------------------------

    def set_router(self, router: Router) -> None:
        """SIGHUP: route with a new configuration from the next delivery on."""
        self._attempts.router = router
        if self.direct is not None:
            self.direct.router = router

    def record_direct(self, o: DirectOutcome) -> None:
        """Log and count copies written at the accept (qmgr/direct.py) as outcomes."""
        self._journal.log_delivered(o.env, o.logs, o.now, done=o.done)

    def set_observers(self, observers: DeliveryObservers) -> None:
        """The plugins told of delivery events (start-up, SIGHUP; hooks/events.py)."""
        self._attempts.observers = self._journal.observers = observers
        if self.direct is not None:
            self.direct.observers = observers

    def set_notice_signer(self, sign: Callable[[bytes], bytes] | None) -> None:
        """What DKIM-signs the delivery reports we send (app/wiring.py
        `notice_signer`); None: they go unsigned."""
        self._journal.sign_notice = sign

    def nudge(self) -> None:
        """Wake the manager to scan the database for due messages now.
        Idempotent, cheap; call it from the event loop thread."""
        self._sched.nudge()
        self._wake.set()

    def submit(self, envelope: Envelope) -> None:
        """`envelope` was just committed (its row is 'incoming', its content
        durable): deliver it without reading the database (module contract,
        fast path). Call from the event loop thread right after the 250; the
        manager owns the object from now on."""
        self._sched.submit(envelope)
        self._wake.set()

    async def stop(self) -> None:
        """Start no new deliveries, wait for those in flight, then return."""
        self._stopping = True
        self._wake.set()
        if self._running:
            await self._stopped.wait()

    async def abandon(self) -> int:
        """The stop (app/lifecycle.py): start nothing more and cancel every delivery
        in progress now, one log line each (qmgr/inflight.py); how many."""
        self._stopping = self._abandoned = True
        self._wake.set()
        return await self._attempts.inflight.abandon(self._maillog)

    @property
    def mailbox_health(self) -> StorageHealth:
        """Faults of the Maildir storage (delivery/local.py)."""
        return self._mailboxes.health

    def statistics(self) -> dict[str, Any]:
        """Snapshot for the admin UI/CLI: queue counts by state, counters,
        destinations (tracked, dead, slots in use). Reads the database on
        the calling thread (a quick indexed query)."""
        return {
            "queue": self._store.counts(),
            "in_flight": len(self._sched.inflight),
            "running": self._running,
            "started_at": self._started_at,
            **self._counters,
            "destinations": self._sched.dests.statistics(self._clock()),
            "storage": self.storage_status(),
            "waiting_for_next_hop": len(self._sched.waiters),
        }

    def storage_status(self) -> dict[str, Any]:
        """Queue and mailbox health, free space, outcomes kept in memory and
        entries waiting to be requeued (qmgr/settle.py). Any thread."""
        return self._journal.storage_status()

    # --- operator actions (qmgr/operator.py) --------------------------------------------

    async def hold(self, ids: list[str] | None = None) -> ActionResult:
        return await self._operator.hold(ids)

    async def release(self, ids: list[str] | None = None) -> ActionResult:
        return await self._operator.release(ids)

    async def delete(self, ids: list[str] | None = None) -> ActionResult:
        return await self._operator.delete(ids)

    async def bounce(self, ids: list[str] | None) -> ActionResult:
        return await self._operator.bounce(ids)

    async def requeue(self, ids: list[str] | None = None) -> ActionResult:
        return await self._operator.requeue(ids)

    async def flush(self, domain: str | None = None) -> dict[str, Any]:
        return await self._operator.flush(domain)

    # --- the loop ---------------------------------------------------------------------

    async def run(self, *, recover: bool = True) -> None:
        """Recover the store, then deliver until `stop()`.

        `recover=False` when the store was recovered before other processes
        started writing to it (worker processes: recovery must never run
        while another process has a commit half-way).
        """
        self._running = True
        self._stopped.clear()
        self._sched.nudge()
        loop = asyncio.get_running_loop()

        def wake_from_any_thread() -> None:
            loop.call_soon_threadsafe(self._wake.set)

        # A fault the SMTP side saw wakes us to probe for the recovery.
        self._store.health.on_episode = wake_from_any_thread
        keeper = None
        if self._shared is not None:  # until the last delivery has ended (finally)
            owned = lambda: self._sched.inflight | self._sched.unsaved.keys()  # noqa: E731
            keeper = asyncio.create_task(keep_leases(self._shared, owned, self.nudge))
        try:
            if recover:
                await self._recover()
            async with asyncio.TaskGroup() as tg:
                while not self._stopping:
                    self._wake.clear()
                    try:
                        await self._start_work(tg)
                    except STORE_ERRORS as exc:
                        # The store cannot be read or written (disk full, I/O
                        # error): never let that end the manager. Wait, retry.
                        self._sched.scan_failed()
                        self._journal.write_failed(exc, "queue scan failed")
                    sleep = self._sched.sleep_time(self._clock())
                    if sleep <= 0:
                        await asyncio.sleep(0)  # let deliveries run, then go on
                        continue
                    try:
                        await asyncio.wait_for(self._wake.wait(), sleep)
                    except TimeoutError:
                        self._sched.timed_out()  # the safety-net scan and sweep
            if not self._abandoned and (self._sched.unsaved or self._sched.requeue):
                # Stopping: what a failed write left in memory gets a last
                # chance, so a restart has less to redo (recovery does the rest).
                async with self._operator.lock():
                    await self._journal.retry_round()
        finally:
            if keeper is not None:
                keeper.cancel()
            self._store.health.on_episode = None
            self._running = False
            self._stopped.set()

    async def _recover(self) -> None:
        """store.recover(), retried with the storage back-off while the store fails."""
        while not self._stopping:
            try:
                report: Any = await asyncio.to_thread(self._store.recover)
            except STORE_ERRORS as exc:
                self._journal.write_failed(exc, "queue recovery failed")
                self._sched.begin_storage_round()  # this loop is the retry
                self._wake.clear()  # stop() sets it again
                try:
                    await asyncio.wait_for(self._wake.wait(), self._sched.storage_delay)
                except TimeoutError:
                    pass
                self._wake.clear()
                continue
            self._sched.recovered()
            log.info(
                "queue recovered: %d entries, %d reactivated, %d corrupt",
                report.queued,
                len(report.reactivated),
                len(report.missing_content),
            )
            return

    async def _start_work(self, tg: asyncio.TaskGroup) -> None:
        sched, now = self._sched, self._clock()
        queue, mailbox = self._store.health, self._mailboxes.health
        sched.begin_round(now, degraded=queue.degraded or mailbox.degraded, quiet=queue.quiet)
        # The operator lock keeps a hold/delete from landing between our
        # choice of an entry and its start (operator.py Rule 1).
        async with self._operator.lock():
            if sched.storage_round_due(now):
                await self._journal.retry_round()
            if sched.sweep_due(now):
                await self._journal.sweep()
            if sched.held(now):
                return  # a store call just failed: wait for the retry
            if sched.has_waiting_work():
                await self._retry_waiting(now)
            if sched.free_slots() <= 0:
                return
            if sched.scan_needed:
                await self._scan(tg)
            if sched.fresh:
                await self._start_fresh(tg)

    async def _start_fresh(self, tg: asyncio.TaskGroup) -> None:
        """The fast path: start submitted envelopes (module contract)."""
        batch = self._sched.take_fresh()
        if not batch:
            return
        # 'active' before any hand-over, as for scanned entries: a crash
        # duplicates only what was 'active'. The state test makes the
        # database the judge of every race (module contract).
        try:
            ids = await asyncio.to_thread(self._store.claim, list(batch))
        except STORE_ERRORS as exc:
            # Their rows are 'incoming' (a scan finds them), or 'active' if
            # the commit landed after all: those the requeue moves back.
            self._sched.scan_failed()
            self._journal.write_failed(
                exc, f"cannot start {len(batch)} new messages", requeue=list(batch)
            )
            return
        self._sched.started(ids)
        for qid in ids:
            self._attempts.inflight.track(
                tg.create_task(self._deliver_fenced(qid, batch[qid])), qid
            )

    async def _scan(self, tg: asyncio.TaskGroup) -> None:
        """Take due entries from the database (module contract, scan)."""
        free, busy = self._sched.begin_scan()
        try:
            taken, corrupt, full, retry = await asyncio.to_thread(
                scan_db, self._store, self._shared, self._clock(), free, busy
            )
        except (ScanFailed, *STORE_ERRORS) as exc:
            self._sched.scan_failed()
            ids, cause = (exc.ids, exc.cause) if isinstance(exc, ScanFailed) else ([], exc)
            self._journal.write_failed(cause, "queue scan failed", requeue=ids)
            return
        except BaseException:
            self._sched.scan_failed()
            raise
        self._counters["errors"] += corrupt
        self._sched.end_scan((qid for qid, _ in taken), full=full, next_retry=retry)
        for qid, env in taken:
            self._attempts.inflight.track(tg.create_task(self._deliver_fenced(qid, env)), qid)

    async def _retry_waiting(self, now: float) -> None:
        """Make mail waiting for a next hop due now (waiting.py Rules 2, 3).
        Call with the operator lock held."""
        ids = self._sched.waiting_due(now)
        if not ids:
            return
        try:
            moved = await asyncio.to_thread(
                self._store.move,
                ids,
                QueueState.DEFERRED,
                now,
                from_states=(QueueState.DEFERRED,),
            )
        except STORE_ERRORS as exc:
            self._journal.write_failed(exc, "cannot retry mail waiting for a next hop")
            return
        self._sched.waiting_moved(ids, moved, now)

    # --- one message ---------------------------------------------------------------

    async def deliver(self, qid: str) -> None:
        """One delivery run for one message, loaded from the store (the entry
        should be 'active'; exceptions propagate)."""
        await self._attempts.deliver(await asyncio.to_thread(self._store.load, qid))

    async def _deliver_fenced(self, qid: str, env: Envelope | None = None) -> None:
        """Exception fence: one bad message never stops the manager, and one
        the store failed for stays the manager's (settle.py Rule 1)."""
        try:
            if env is None:
                env = await asyncio.to_thread(self._store.load, qid)
            await self._attempts.deliver(env)
        except CorruptEntry:
            self._counters["errors"] += 1  # the store logged and quarantined it
        except Exception as exc:
            if isinstance(exc, StoreError) or is_storage_fault(exc):
                # Not read (or not marked): requeued from disk by the next round.
                self._journal.write_failed(
                    exc, f"queue_id={qid}: cannot read the queue entry", requeue=[qid]
                )
            else:
                await self._defer_after_bug(qid, exc)
        finally:
            self._sched.finished(qid)
            self._wake.set()
        if qid in self._operator.pending and not self._sched.owned(qid):
            try:
                await self._operator.after_delivery(qid)
            except Exception:
                log.exception("queue_id=%s: operator action after delivery failed", qid)

    async def _defer_after_bug(self, qid: str, exc: BaseException) -> None:
        """An unexpected exception (a bug) ended a delivery: log it with its
        traceback and defer the entry by `run_interval` (module contract)."""
        self._counters["errors"] += 1
        log.error("queue_id=%s: delivery failed unexpectedly; deferring", qid, exc_info=exc)
        when = self._clock() + self.settings.run_interval
        try:
            await asyncio.to_thread(
                self._store.move,
                [qid],
                QueueState.DEFERRED,
                when,
                from_states=(QueueState.ACTIVE,),
            )
            self._sched.note_retry(when)
        except STORE_ERRORS as err:
            self._journal.write_failed(err, f"queue_id={qid}: cannot defer", requeue=[qid])
