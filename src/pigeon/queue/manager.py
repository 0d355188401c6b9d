"""The queue manager: the single owner of queue state (Postfix qmgr).

Contract:
  * Only the manager changes queue state: it calls the manager-side API of
    `QueueStore` (recover, due, load, mark_active, move, update, remove),
    always via `asyncio.to_thread` because those calls wait for fsync. The
    SMTP side only commits new messages and then calls `submit(envelope)`
    (same process) or `nudge()` (worker processes, local submission).
    Agents return results and never touch the store.
  * `run()` first calls `store.recover()` (retried while the store fails),
    then loops: start work (at most
    `concurrency` messages in flight), then sleep until woken (`submit`,
    `nudge`, a delivery ending), until the next retry is due, or
    `run_interval`. Starting work takes the operator lock (operator.py
    Rule 1) and has two paths:
      - Fast path (fresh mail): `submit()` puts the committed Envelope in an
        in-memory FIFO (at most FRESH_LIMIT) and wakes the manager, which
        takes every envelope waiting there (up to the free slots), moves
        their rows from 'incoming' to 'active' in ONE conditional
        transaction (`store.move`), and delivers each one that moved from
        the object in hand: no due(), no load(), no JSON parsing (the
        content is `store.content_path(qid)`). The move keeps two promises: a crash
        duplicates only entries that were 'active' (as on the scan path;
        recover() redoes them), and the database judges every race: a row
        a scan took already, or that an operator held, deleted or bounced
        before its submit() arrived, is no longer 'incoming' and is
        skipped.
      - Scan (the database): only when needed: after start-up and recovery,
        after `nudge()` (worker processes, operator release/requeue/flush,
        ETRN, reports the manager enqueued), when the cached next retry
        time is reached, when the FIFO overflowed, when the previous scan
        filled every free slot (more may wait), and every `run_interval` as
        a safety net. A scan drops the FIFO (those rows are 'incoming' in
        the database and `due()` finds them, in its fair order with
        deferred mail: new mail never waits behind a backlog, nor a backlog
        behind new mail), takes `due()` entries, marks them 'active' and
        loads their envelopes, all in one worker-thread call.
  * Next retry: the earliest `next_attempt` of a 'deferred' row is cached;
    it is read after each scan and lowered by each deferral, never on every
    loop. Rows in 'incoming' need no timer: each comes with a scan trigger
    above, or from `submit()`.
  * Delivering one message (`deliver(qid)`): alias-expand pending recipients
    (each expansion becomes its own recipient with `original` set, so retries
    neither re-expand nor redeliver the parts done) and merge duplicates: a
    pending recipient whose destination (`Router.delivery_key`: the Maildir,
    or the remote address) an earlier recipient of the message already has
    is dropped, the first keeping its DSN parameters (Postfix's duplicate
    filter); resolve routes; local
    routes go to Maildir, all of one message's in one worker-thread call;
    other routes are grouped by `Nexthop` and cut into chunks of
    `destination_recipients`, one `DeliveryRequest` (one SMTP transaction)
    each, given to `agents[nexthop.transport]`. The requests of one message run
    concurrently, each holding one of its destination's
    `destination_concurrency` slots. A dead destination (schedule.py Rule 6)
    gets no attempt: its recipients are deferred "delivery temporarily
    suspended". No agent for a transport: deferred 4.3.0.
  * Results, per recipient: DELIVERED and BOUNCED are final; DEFERRED stays
    for the next attempt with its diagnostic. An agent exception defers every
    recipient of its request with 4.0.0 (the traceback goes to the debug log,
    not into reports) and is not counted against the destination (it says
    nothing about the next hop; schedule.py Rule 6 counts only attempts the
    agent reported). A recipient the agent gave no result for: 4.0.0.
  * Then, in this order (Rule: durable first, log after; the log never says
    "sent" for a state a crash could roll back):
      - every recipient final -> reports due (notify.py) are enqueued, the
        message is removed (messages finishing together share one removal:
        their rows go in one transaction, then their files, store.py
        Rule 4; each waits for its removal before it logs "removed");
      - else expired (schedule.expired, `max_lifetime`) -> what is left
        bounces with 4.4.7 (RFC 3463 "delivery time expired"; 5.2.2 for a
        mailbox that stayed over quota, 4.2.2 before), reports, removal;
      - else attempts += 1, next_attempt with backoff and jitter, state
        'deferred'; a delay warning is enqueued if due (once per message).
        A local recipient deferred because our storage failed (Maildir
        ENOSPC, EIO, EROFS) makes it the short storage back-off instead,
        not counted as an attempt (queue/settle.py Rule 2).
    Reports are committed before the original is removed or updated: a crash
    may duplicate a report, never lose one.
  * Store failures (queue/settle.py): no state change is assumed to
    succeed. An outcome that could not be written stays in memory and is
    written again by the storage retry rounds; an entry that could not be
    read or marked is requeued from 'active'; a sweep every `run_interval`
    requeues 'active' entries nobody owns. While a store call is failing no
    scan or start is tried before the next retry round. Storage faults are
    logged once per episode by `store.health` (queue/health.py) and Maildir
    ones by `mailbox_health`, with no traceback.
  * Next hops that come back (queue/waiting.py): mail deferred because its
    next hop could not be reached (4.4.X) waits in an index per next hop;
    a delivery that gets through a next hop makes the rest due at once, and
    every `probe_interval` (30 s, or `run_interval` when shorter) one
    waiting message per idle next hop is retried as a probe.
  * Log lines (maillog), one per recipient and attempt, Postfix style:
    `to=<..>, orig_to=<..>, relay=mx.example[192.0.2.1]:25, delay=12, dsn=4.4.1,
    status=deferred (connect to ...: Connection refused)`; then
    `sender non-delivery notification: <new id>` for a report, `removed`.
  * Operator actions (hold, release, delete, bounce, requeue, flush) are
    methods of this class too, written in `queue/operator.py`; they and
    the "start work" step (both paths) share one lock (operator.py Rule 1).
  * Metrics: an optional `metrics` object (pigeon.obs.metrics.Metrics or
    anything with the same two methods) is told each recipient result
    after it is durable (`recipient_result(status, kind)`, kind "local" or
    "remote") and the queue delay of each successful delivery
    (`delivery_latency(seconds)`). None: no metrics.
  * Nothing escapes the loop: a corrupt entry is quarantined by the store and
    skipped; an unexpected exception while delivering one message is logged
    (with its traceback: a bug) and the message is deferred by `run_interval`.

Delivery is at-least-once: a crash between a delivery and the following
`store.update()` delivers that recipient again after restart. Exactly-once
would need a per-recipient journal fsync before every delivery; a rare
duplicate is the standard MTA trade-off (Postfix makes the same one).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from pigeon.delivery.api import (
    DeliveryAgent,
    DeliveryRecipient,
    DeliveryRequest,
    Outcome,
    RecipientResult,
)
from pigeon.delivery.maildir import MaildirJob, deliver_batch, failure_status
from pigeon.queue.batching import ThreadBatcher
from pigeon.queue.health import StorageHealth, is_storage_fault
from pigeon.queue.model import Envelope, Recipient, RecipientStatus
from pigeon.queue.notify import plan_notices
from pigeon.queue.operator import OperatorActions
from pigeon.queue.schedule import DestinationState, expired, next_attempt
from pigeon.queue.settle import STORE_ERRORS, Settlement, Settling
from pigeon.queue.store import CorruptEntry, QueueStore, StoreError
from pigeon.queue.waiting import NexthopWaiters, WaitingForHops, waits_for_hop
from pigeon.routing.resolve import Router
from pigeon.vocab import Nexthop, Route

#: Seconds before the first retry after the store failed (disk full, EIO);
#: doubles while it keeps failing (queue/settle.py Rule 2).
STORE_RETRY = 1.0

#: At most this many seconds between probes of a next hop that mail waits
#: for (queue/waiting.py Rule 3); `queue.run_interval` when that is shorter.
NEXTHOP_PROBE = 30.0

#: Fresh envelopes kept in memory (module contract, fast path); past it their
#: rows wait in the database for a scan.
FRESH_LIMIT = 10_000

log = logging.getLogger("pigeon.queue")

NO_AGENT = "mail transport unavailable"
EXPIRED_STATUS = "4.4.7"
MAILBOX_FULL_STATUS = "5.2.2"
_STATUS = {
    Outcome.DELIVERED: RecipientStatus.DELIVERED,
    Outcome.DEFERRED: RecipientStatus.DEFERRED,
    Outcome.BOUNCED: RecipientStatus.BOUNCED,
}
_LOG_STATUS = {Outcome.DELIVERED: "sent", Outcome.DEFERRED: "deferred", Outcome.BOUNCED: "bounced"}


class MailLog(Protocol):
    def log(self, queue_id: str, fields: dict, detail: str | None = None) -> None: ...


def _original_to(rcpt: Recipient, route: Route) -> str | None:
    """The X-Original-To of a Maildir copy: the client's recipient when an
    alias (a catch-all, say) changed it, else None."""
    return rcpt.original if rcpt.original and rcpt.original.lower() != route.address else None


def _chunks(items: list[Recipient], size: int) -> list[list[Recipient]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _earliest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


class Metrics(Protocol):
    def recipient_result(self, status: str, kind: str) -> None: ...
    def delivery_latency(self, seconds: float) -> None: ...


class _ScanFailed(Exception):
    """The scan's move to 'active' failed; `ids` may or may not have moved."""

    def __init__(self, ids: list[str], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.ids, self.cause = ids, cause


class QueueManager(Settling, WaitingForHops, OperatorActions):
    """Moves committed messages to their destinations; see the module contract."""

    def __init__(
        self,
        store: QueueStore,
        router: Router,
        *,
        hostname: str,
        maillog: MailLog,
        agents: Mapping[str, DeliveryAgent] | None = None,
        fsync: bool = True,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        run_interval: float = 60.0,
        concurrency: int = 64,
        min_backoff: float = 300.0,
        max_backoff: float = 4000.0,
        max_lifetime: float = 432000.0,
        delay_warning: float = 14400.0,
        destination_concurrency: int = 20,
        destination_recipients: int = 50,
        destination_failure_limit: int = 3,
        store_retry: float = STORE_RETRY,
        probe_interval: float = NEXTHOP_PROBE,
        metrics: Metrics | None = None,
    ) -> None:
        if destination_recipients < 1 or concurrency < 1:
            raise ValueError("concurrency and destination_recipients must be >= 1")
        self._store = store
        self._router = router
        self._hostname = hostname
        self._maillog = maillog
        self._agents = dict(agents or {})
        self._fsync = fsync
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._run_interval = run_interval
        self._concurrency = concurrency
        self._min_backoff, self._max_backoff = min_backoff, max_backoff
        self._max_lifetime = max_lifetime
        self._delay_warning = delay_warning
        self._dest_rcpts = destination_recipients
        self._dests = DestinationState(
            concurrency=destination_concurrency,
            failure_limit=destination_failure_limit,
            dead_time=min_backoff,
        )
        self._dest_cond: asyncio.Condition | None = None  # created on the running loop
        self._dest_loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._running = False
        self._stopped = asyncio.Event()
        self._inflight: set[str] = set()
        self._metrics = metrics
        self._init_settling(store_retry)  # queue/settle.py
        self._background: set[asyncio.Task] = set()
        # Maildir storage faults (the queue's are the store's: store.health).
        self.mailbox_health = StorageHealth("mailbox")
        # Mail waiting for a next hop to come back (queue/waiting.py).
        self._waiters = NexthopWaiters()
        self._probe_interval = probe_interval
        self._next_probe: float | None = None
        self._due_now: set[str] = set()  # deferred ids to retry now
        self._admin_lock: asyncio.Lock | None = None  # operator.py Rule 1
        self._admin_loop: asyncio.AbstractEventLoop | None = None
        self._pending_actions: dict[str, str] = {}  # qid -> action after delivery
        # The fast path and scans (module contract).
        self._fresh: deque[Envelope] = deque()  # submitted, not started
        self._scan_needed = True
        self._next_retry: float | None = None  # cached, see _sleep_time
        self._retry_in_scan: float | None = None  # deferrals while a scan reads
        # Group commit of removals and of Maildir writes (queue/batching.py).
        self._removals: ThreadBatcher[str, None] = ThreadBatcher(self._remove_entries)
        self._maildirs: ThreadBatcher[MaildirJob, tuple] = ThreadBatcher(self._write_maildirs)
        self._started_at = clock()
        self._counters = {
            "delivered": 0,
            "deferred": 0,
            "bounced": 0,
            "expired": 0,
            "removed": 0,
            "notifications": 0,
            "errors": 0,
        }

    # --- control ------------------------------------------------------------------

    def set_router(self, router: Router) -> None:
        """SIGHUP: route with a new configuration from the next delivery on."""
        self._router = router

    def nudge(self) -> None:
        """Wake the manager to scan the database for due messages now.
        Idempotent, cheap; call it from the event loop thread."""
        self._scan_needed = True
        self._wake.set()

    def submit(self, envelope: Envelope) -> None:
        """`envelope` was just committed (its row is 'incoming', its content
        durable): deliver it without reading the database (module contract,
        fast path). Call from the event loop thread right after the 250; the
        manager owns the object from now on."""
        if len(self._fresh) >= FRESH_LIMIT:
            self._scan_needed = True  # its row waits in the database
        else:
            self._fresh.append(envelope)
        self._wake.set()

    async def stop(self) -> None:
        """Start no new deliveries, wait for those in flight, then return."""
        self._stopping = True
        self._wake.set()
        if self._running:
            await self._stopped.wait()

    def statistics(self) -> dict[str, Any]:
        """Snapshot for the admin UI/CLI: queue counts by state, counters,
        destinations (tracked, dead, slots in use).

        Reads the database on the calling thread (a quick indexed query).
        """
        return {
            "queue": self._store.counts(),
            "in_flight": len(self._inflight),
            "running": self._running,
            "started_at": self._started_at,
            **self._counters,
            "destinations": self._dests.statistics(self._clock()),
            "storage": self.storage_status(),
            "waiting_for_next_hop": len(self._waiters),
        }

    def storage_status(self) -> dict[str, Any]:
        """The storage state for status and metrics: queue and mailbox health
        (queue/health.py), free space against the reserve (queue/space.py),
        outcomes kept in memory and entries waiting to be requeued
        (queue/settle.py). Any thread; one statvfs at most."""
        return {
            "queue": self._store.health.snapshot(),
            "mailbox": self.mailbox_health.snapshot(),
            "space": self._store.space.snapshot(),
            "unsaved": len(self._unsaved),
            "requeue": len(self._requeue),
        }

    async def run(self, *, recover: bool = True) -> None:
        """Recover the store, then deliver until `stop()`.

        `recover=False` when the store was recovered before other processes
        started writing to it (worker processes: recovery must never run
        while another process has a commit half-way).
        """
        self._running = True
        self._stopped.clear()
        self._scan_needed = True
        loop = asyncio.get_running_loop()
        # A fault the SMTP side saw wakes us to probe for the recovery.
        self._store.health.on_episode = lambda: loop.call_soon_threadsafe(self._wake.set)
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
                        self._scan_needed = True
                        self._write_failed(exc, "queue scan failed")
                    sleep = self._sleep_time()
                    if sleep <= 0:
                        await asyncio.sleep(0)  # let deliveries run, then go on
                        continue
                    try:
                        await asyncio.wait_for(self._wake.wait(), sleep)
                    except TimeoutError:
                        # A retry became due, or run_interval passed: the
                        # safety-net scan and sweep (module contract).
                        self._scan_needed = True
                        self._sweep_needed = True
            if self._unsaved or self._requeue:
                # Stopping: what a failed write left in memory gets a last
                # chance, so a restart has less to redo (recover() does the rest).
                async with self._op_lock():
                    await self._retry_storage()
        finally:
            self._store.health.on_episode = None
            self._running = False
            self._stopped.set()

    async def _start_work(self, tg: asyncio.TaskGroup) -> None:
        now = self._clock()
        if self._next_retry is not None and self._next_retry <= now:
            self._scan_needed = True
        if self._storage_due is None and (
            self._store.health.degraded or self.mailbox_health.degraded
        ):
            # Degraded by a failed commit or Maildir: probe rounds notice the recovery.
            self._storage_due = now + max(self._store_retry, self._store.health.quiet)
        # The operator lock keeps a hold/delete from landing between our
        # choice of an entry and its start (operator.py Rule 1).
        async with self._op_lock():
            if self._storage_retry_due(now):
                await self._retry_storage()
            if self._sweep_needed and now >= self._held_until:
                await self._sweep()
            if now < self._held_until:
                return  # a store call just failed: wait for the retry
            if self._waiters or self._due_now:
                await self._retry_waiting(now)
            if len(self._inflight) >= self._concurrency:
                return
            if self._scan_needed:
                await self._scan(tg)
            if self._fresh:
                await self._start_fresh(tg)

    def _owned(self, qid: str) -> bool:
        """A delivery, an unsaved outcome or a pending requeue owns `qid`."""
        return qid in self._inflight or qid in self._unsaved or qid in self._requeue

    async def _start_fresh(self, tg: asyncio.TaskGroup) -> None:
        """The fast path: start submitted envelopes (module contract)."""
        batch: dict[str, Envelope] = {}
        room = self._concurrency - len(self._inflight)
        while self._fresh and len(batch) < room:
            env = self._fresh.popleft()
            if not self._owned(env.queue_id):
                batch[env.queue_id] = env
        if not batch:
            return
        # 'active' before any hand-over, as for scanned entries: a crash
        # duplicates only what was 'active' (recover() redoes it). The state
        # test makes the database the judge of every race: a row a scan took
        # already, or an operator held or deleted meanwhile, is not 'incoming'
        # and is not started.
        try:
            ids = await asyncio.to_thread(
                self._store.move, list(batch), "active", from_states=("incoming",)
            )
        except STORE_ERRORS as exc:
            # Their rows are 'incoming' (a scan finds them), or 'active' if
            # the commit landed after all: those the requeue moves back.
            self._scan_needed = True
            self._write_failed(exc, f"cannot start {len(batch)} new messages", requeue=list(batch))
            return
        self._inflight.update(ids)
        for qid in ids:
            tg.create_task(self._deliver_fenced(qid, batch[qid]))

    async def _scan(self, tg: asyncio.TaskGroup) -> None:
        """Take due entries from the database (module contract, scan)."""
        free = self._concurrency - len(self._inflight)
        # Their rows are 'incoming': due() finds them, fairly with deferred mail.
        self._fresh.clear()
        self._scan_needed = False  # a nudge() during the scan sets it again
        self._retry_in_scan = None
        busy = frozenset(self._inflight | self._unsaved.keys() | self._requeue)
        try:
            taken, corrupt, full, retry = await asyncio.to_thread(
                self._scan_db, self._clock(), free, busy
            )
        except (_ScanFailed, *STORE_ERRORS) as exc:
            self._scan_needed = True
            ids, cause = (exc.ids, exc.cause) if isinstance(exc, _ScanFailed) else ([], exc)
            self._write_failed(cause, "queue scan failed", requeue=ids)
            return
        except BaseException:
            self._scan_needed = True
            raise
        self._counters["errors"] += corrupt
        # A deferral written while the scan read may be missing from `retry`.
        self._next_retry = _earliest(retry, self._retry_in_scan)
        if full:
            self._scan_needed = True  # every free slot taken: more may wait
        for qid, env in taken:
            self._inflight.add(qid)
            tg.create_task(self._deliver_fenced(qid, env))

    def _scan_db(
        self, now: float, free: int, busy: frozenset[str]
    ) -> tuple[list[tuple[str, Envelope | None]], int, bool, float | None]:
        """Worker thread: the entries taken (marked 'active', with their
        envelopes), how many were corrupt, whether due() filled every slot,
        the next retry time."""
        store = self._store
        ids = store.due(now, free)
        # due() never returns 'active' entries, and ours are marked active
        # before they start; an entry kept in memory after a failed write
        # (queue/settle.py) may still be 'deferred' in the database.
        new = [q for q in ids if q not in busy]
        if new:
            try:
                store.mark_active(new)
            except STORE_ERRORS as exc:
                raise _ScanFailed(new, exc) from exc
        taken: list[tuple[str, Envelope | None]] = []
        corrupt = 0
        for qid in new:
            try:
                taken.append((qid, store.load(qid)))
            except CorruptEntry:
                corrupt += 1  # quarantined and logged by the store
            except STORE_ERRORS:
                # deliver() loads it again, and requeues it if that fails too.
                taken.append((qid, None))
        return taken, corrupt, len(ids) >= free and bool(new), store.next_retry()

    def _sleep_time(self) -> float:
        now = self._clock()
        wake = now + self._run_interval
        if self._storage_due is not None:
            wake = min(wake, self._storage_due)
        if self._waiters and self._next_probe is not None:
            wake = min(wake, self._next_probe)
        if now < self._held_until:
            return min(wake, self._held_until) - now  # a store call failed: wait
        if self._due_now:
            return 0.0
        if len(self._inflight) < self._concurrency:  # else a finishing delivery wakes us
            if self._scan_needed or self._fresh:
                return 0.0
            if self._next_retry is not None:
                wake = min(wake, self._next_retry)
        return max(0.0, wake - now)

    def _note_retry(self, when: float) -> None:
        """A row became 'deferred' until `when`: keep the cached next retry right."""
        self._next_retry = _earliest(self._next_retry, when)
        self._retry_in_scan = _earliest(self._retry_in_scan, when)

    async def _deliver_fenced(self, qid: str, env: Envelope | None = None) -> None:
        """Exception fence: one bad message never stops the manager, and one
        the store failed for stays the manager's (queue/settle.py Rule 1)."""
        try:
            if env is None:
                env = await asyncio.to_thread(self._store.load, qid)
            await self._deliver_envelope(env)
        except CorruptEntry:
            self._counters["errors"] += 1  # the store logged and quarantined it
        except Exception as exc:
            if isinstance(exc, (StoreError, sqlite3.Error)) or is_storage_fault(exc):
                # Not read (or not marked): requeued from disk by the next round.
                self._write_failed(
                    exc, f"queue_id={qid}: cannot read the queue entry", requeue=[qid]
                )
            else:
                await self._defer_after_bug(qid, exc)
        finally:
            self._inflight.discard(qid)
            self._wake.set()
        if qid in self._pending_actions and not self._owned(qid):
            try:
                await self._after_delivery(qid)
            except Exception:
                log.exception("queue_id=%s: operator action after delivery failed", qid)

    async def _defer_after_bug(self, qid: str, exc: BaseException) -> None:
        """An unexpected exception (a bug) ended a delivery: log it with its
        traceback and defer the entry by `run_interval` (module contract)."""
        self._counters["errors"] += 1
        log.error("queue_id=%s: delivery failed unexpectedly; deferring", qid, exc_info=exc)
        when = self._clock() + self._run_interval
        try:
            await asyncio.to_thread(self._store.set_state, qid, "deferred", when)
            self._note_retry(when)
        except STORE_ERRORS as err:
            self._write_failed(err, f"queue_id={qid}: cannot defer", requeue=[qid])

    # --- one message ---------------------------------------------------------------

    async def deliver(self, qid: str) -> None:
        """One delivery run for one message (see the module contract).

        The entry should be 'active' (run() marks it); exceptions propagate.
        """
        await self._deliver_envelope(await asyncio.to_thread(self._store.load, qid))

    async def _deliver_envelope(self, env: Envelope) -> None:
        """`deliver()` of an envelope in hand (loaded, or from `submit`)."""
        known = self._expand_aliases(env)
        logs: list[tuple[dict, str]] = []
        local: list[tuple[Recipient, Route]] = []
        remote: dict[Nexthop, list[Recipient]] = {}
        for rcpt in env.recipients:
            if rcpt.final:
                continue
            route = known.get(rcpt.address)
            if route is None:
                routes = self._router.resolve(rcpt.address, expand_aliases=False)
                route = (
                    routes[0]
                    if routes
                    else Route.remote(
                        rcpt.address, Nexthop("smtp", rcpt.address.rpartition("@")[2])
                    )
                )
            if route.kind == "local":
                local.append((rcpt, route))
            else:
                remote.setdefault(route.nexthop, []).append(rcpt)
        local_task = None
        async with asyncio.TaskGroup() as tg:
            if local:
                local_task = tg.create_task(self._deliver_local(env, local, logs))
            for nh, rcpts in remote.items():
                for chunk in _chunks(rcpts, self._dest_rcpts):
                    tg.create_task(self._deliver_remote(env, nh, chunk, logs))
        await self._finish(env, logs, storage_retry=bool(local_task and local_task.result()))

    async def _finish(
        self, env: Envelope, logs: list[tuple[dict, str]], *, storage_retry: bool = False
    ) -> None:
        """Conclude one delivery run and make it durable (queue/settle.py).

        `storage_retry`: a recipient was deferred because our own storage
        failed: the next attempt comes after the short storage back-off and
        does not count as an attempt (settle.py Rule 2).
        """
        qid, now = env.queue_id, self._clock()
        done = all(r.final for r in env.recipients)
        if not done and expired(env.received_at, now, self._max_lifetime):
            age = now - env.received_at
            for r in env.recipients:
                if r.final:
                    continue
                last = f"; last error: {r.diagnostic}" if r.diagnostic else ""
                # Remote-MTA and Last-Attempt-Date stay those of the last attempt.
                # A mailbox that stayed over quota is "mailbox full" for good
                # (RFC 3463 X.2.2: persistent transient, then permanent).
                dsn = MAILBOX_FULL_STATUS if r.dsn_status == "4.2.2" else EXPIRED_STATUS
                r.status, r.dsn_status, r.action = RecipientStatus.BOUNCED, dsn, "failed"
                r.diagnostic = f"message expired after {age / 86400:.1f} days in queue{last}"
                logs.append((self._fields(r, r.remote_mta or "none", "expired"), r.diagnostic))
            done = True
        plan = plan_notices(
            env,
            done=done,
            now=now,
            reporting_mta=self._hostname,
            postmaster=self._router.canonical("postmaster"),
            content=self._store.content(qid),
            delay_warning=self._delay_warning,
            max_lifetime=self._max_lifetime,
        )
        when = 0.0
        if not done and storage_retry:
            when = self._mailbox_retry_at(now)
        elif not done:
            env.attempts += 1
            when = next_attempt(
                now,
                env.attempts,
                self._rng,
                min_backoff=self._min_backoff,
                max_backoff=self._max_backoff,
            )
        await self._settle(Settlement(env, logs, plan, done, when, now))

    async def _remove(self, qid: str) -> None:
        """Remove `qid` durably, together with the other messages finishing
        now (module contract); returns once its row and file are gone."""
        await self._removals.submit(qid)

    def _remove_entries(self, ids: list[str]) -> list[None]:
        """Worker thread: remove many entries in one transaction (store.py
        Rule 4: rows first, then files); all or none fail."""
        self._store.remove_many(ids)
        return [None] * len(ids)

    # --- local ----------------------------------------------------------------------

    async def _deliver_local(
        self, env: Envelope, todo: list[tuple[Recipient, Route]], logs: list[tuple[dict, str]]
    ) -> bool:
        """Maildir deliveries of one message; True when one was deferred
        because our storage failed (delivery/maildir.py `failure_status`)."""
        jobs: list[tuple[Recipient, Route]] = []
        for rcpt, route in todo:
            if self._router.mailbox_exists(route.address):
                jobs.append((rcpt, route))
                continue
            self._set(
                rcpt,
                RecipientStatus.BOUNCED,
                "5.1.1",
                "no such local mailbox",
                action="failed",
                transport="local",
            )
            logs.append((self._fields(rcpt, "local", "bounced"), rcpt.diagnostic))
        if not jobs:
            return False
        # Every Maildir write of every message finishing now goes in one
        # worker-thread call, with one fsync per Maildir (queue/batching.py).
        source = self._store.content_path(env.queue_id)
        results = await asyncio.gather(
            *(
                self._maildirs.submit(
                    MaildirJob(
                        route.mailbox, source, env.sender, route.address, _original_to(rcpt, route)
                    )
                )
                for rcpt, route in jobs
            )
        )
        storage_fault = False
        for (rcpt, route), (started, ended, err) in zip(jobs, results):
            if err is not None:
                dsn, reason, ours = failure_status(err)
                if ours:
                    storage_fault = True
                    self.mailbox_health.failed(err)
                    self._mailbox_probe_dir = Path(route.mailbox) / "tmp"
                self._set(
                    rcpt,
                    RecipientStatus.DEFERRED,
                    dsn,
                    f"maildir delivery failed: {reason}",
                    transport="local",
                )
                logs.append((self._fields(rcpt, "local", "deferred"), rcpt.diagnostic))
                continue
            self.mailbox_health.succeeded()
            self._set(
                rcpt,
                RecipientStatus.DELIVERED,
                "2.0.0",
                "delivered to maildir",
                action="delivered",
                transport="local",
            )
            fields = self._fields(rcpt, "local", "sent")
            wait = max(0.0, started - env.received_at) if env.received_at else 0.0
            fields["delays"] = f"{wait:.2f}/0.00/{ended - started:.2f}"
            logs.append((fields, rcpt.diagnostic))
        return storage_fault

    def _write_maildirs(self, jobs: list[MaildirJob]) -> list[tuple[float, float, OSError | None]]:
        """Worker thread: deliver a batch of Maildir jobs (delivery/maildir.py
        `deliver_batch`); per job (started, ended, the OSError or None)."""
        return deliver_batch(jobs, fsync=self._fsync, clock=self._clock)

    # --- remote -----------------------------------------------------------------------

    async def _deliver_remote(
        self, env: Envelope, nh: Nexthop, rcpts: list[Recipient], logs: list[tuple[dict, str]]
    ) -> None:
        agent = self._agents.get(nh.transport)
        if agent is None:
            self._defer_all(
                rcpts,
                "4.3.0",
                f"{NO_AGENT}: no delivery agent for transport {nh.transport}",
                nh.transport,
                logs,
            )
            return
        loop = asyncio.get_running_loop()
        if self._dest_cond is None or self._dest_loop is not loop:
            self._dest_cond, self._dest_loop = asyncio.Condition(), loop
        cond, acquired = self._dest_cond, False
        try:
            async with cond:
                await cond.wait_for(lambda: self._dests.acquire(nh))
                acquired = True
            if self._dests.is_dead(nh, self._clock()):
                self._defer_all(
                    rcpts,
                    "4.4.1",
                    f"delivery temporarily suspended: {self._dests.dead_reason(nh)}",
                    nh.transport,
                    logs,
                )
                self._waiters.add(nh, env.queue_id)  # waiting.py Rule 1
                return
            started = self._clock()
            results, raised = await self._call_agent(agent, env, nh, rcpts)
            self._apply(
                env.queue_id,
                nh,
                rcpts,
                results,
                logs,
                queue_wait=max(0.0, started - env.received_at) if env.received_at else 0.0,
                judge_destination=not raised,
            )
        finally:
            if acquired:
                async with cond:
                    self._dests.release(nh)
                    cond.notify_all()

    async def _call_agent(
        self, agent: DeliveryAgent, env: Envelope, nh: Nexthop, rcpts: list[Recipient]
    ) -> tuple[list[RecipientResult], bool]:
        """The agent's results, and whether it raised (then they are our 4.0.0s)."""
        request = DeliveryRequest(
            queue_id=env.queue_id,
            sender=env.sender,
            params=env.params,
            recipients=tuple(DeliveryRecipient(r.address, r.params) for r in rcpts),
            content=self._store.content_path(env.queue_id),
            size=env.size,
            eight_bit=env.eight_bit,
            smtputf8=env.params.smtputf8,
            nexthop=nh,
        )
        try:
            return list(await agent.deliver(request)), False
        except Exception as e:
            # Two faces (CONTRIBUTING.md, rule 6): the traceback to our log, a generic
            # reason into the queue and any report.
            log.warning(
                "queue_id=%s: delivery agent %s raised %r; deferring %d recipient(s)",
                env.queue_id,
                nh,
                e,
                len(rcpts),
                exc_info=True,
            )
            return [
                RecipientResult(
                    r.address,
                    Outcome.DEFERRED,
                    "4.0.0",
                    f"delivery agent error ({type(e).__name__})",
                )
                for r in rcpts
            ], True

    def _apply(
        self,
        qid: str,
        nh: Nexthop,
        rcpts: list[Recipient],
        results: list[RecipientResult],
        logs: list[tuple[dict, str]],
        *,
        queue_wait: float = 0.0,
        judge_destination: bool = True,
    ) -> None:
        by_addr: dict[str, RecipientResult] = {}
        for res in results:
            by_addr.setdefault(res.address, res)
            by_addr.setdefault(res.address.lower(), res)
        reached = delivered = waiting = False
        first_failure = ""
        for r in rcpts:
            res = by_addr.get(r.address) or by_addr.get(r.address.lower())
            try:
                outcome = Outcome(res.outcome) if res is not None else None
            except ValueError:
                outcome = None
            if res is None or outcome is None:
                log.warning(
                    "queue_id=%s: agent for %s gave no valid result for %s", qid, nh, r.address
                )
                outcome = Outcome.DEFERRED
                res = RecipientResult(
                    r.address, outcome, "4.0.0", "delivery agent returned no result"
                )
            if res.remote_mta or outcome is not Outcome.DEFERRED:
                reached = True
            elif not first_failure:
                first_failure = res.diagnostic
            delivered = delivered or outcome is Outcome.DELIVERED
            waiting = waiting or (outcome is Outcome.DEFERRED and waits_for_hop(res.status))
            action = (
                res.action
                if outcome is Outcome.DELIVERED
                else ("failed" if outcome is Outcome.BOUNCED else "")
            )
            self._set(
                r,
                _STATUS[outcome],
                res.status,
                res.diagnostic,
                action=action,
                transport=nh.transport,
                remote_mta=res.remote_mta,
            )
            fields = self._fields(r, res.remote_mta or "none", _LOG_STATUS[outcome])
            # Postfix-style breakdown: queue wait / connection setup / transmission.
            conn_s, xfer_s = getattr(res, "timings", (0.0, 0.0))
            fields["delays"] = f"{queue_wait:.2f}/{conn_s:.2f}/{xfer_s:.2f}"
            if getattr(res, "tls", ""):
                # Whether the hop was encrypted, and verified, belongs in the
                # delivery record (e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384 (unverified)").
                fields["tls"] = res.tls
            logs.append((fields, res.diagnostic))
        if judge_destination:
            # An agent that raised failed on this message (our bug, or
            # content it cannot handle), not on the next hop: that must not
            # mark the destination dead for every other message.
            self._dests.record(nh, self._clock(), reached=reached, reason=first_failure)
        if waiting:  # waiting.py Rules 1, 2
            self._waiters.add(nh, qid)
        if delivered:
            self._hop_is_back(nh, qid)

    # --- helpers ------------------------------------------------------------------------

    def _defer_all(
        self,
        rcpts: list[Recipient],
        dsn: str,
        diagnostic: str,
        transport: str,
        logs: list[tuple[dict, str]],
    ) -> None:
        """Defer every recipient of a request that got no attempt (relay=none)."""
        for r in rcpts:
            self._set(r, RecipientStatus.DEFERRED, dsn, diagnostic, transport=transport)
            logs.append((self._fields(r, "none", "deferred"), r.diagnostic))

    def _set(
        self,
        rcpt: Recipient,
        status: RecipientStatus,
        dsn: str,
        diagnostic: str,
        *,
        action: str = "",
        transport: str = "",
        remote_mta: str = "",
    ) -> None:
        rcpt.status, rcpt.dsn_status, rcpt.diagnostic = status, dsn, diagnostic
        rcpt.action = action
        if transport:
            rcpt.transport = transport
        rcpt.remote_mta = remote_mta
        rcpt.last_attempt = self._clock()

    @staticmethod
    def _fields(rcpt: Recipient, relay: str, status: str) -> dict:
        fields: dict = {"to": rcpt.address}
        if rcpt.original and rcpt.original != rcpt.address:
            fields["orig_to"] = rcpt.original
        fields.update(relay=relay, delay=0.0, dsn=rcpt.dsn_status, status=status)
        return fields

    def _expand_aliases(self, env: Envelope) -> dict[str, Route]:
        """Replace each pending, not-yet-expanded recipient by its alias
        expansion, and drop every pending recipient whose destination an
        earlier one already has (`Router.delivery_key`: one Maildir, or one
        remote address), so one message reaches one mailbox once however
        many recipients or aliases lead there; the first keeps its DSN
        parameters. Persisted with the message's next update, so it happens
        once.

        Returns the route of each recipient kept as it is (no alias): the
        same Route `resolve(address, expand_aliases=False)` gives, so the
        caller need not resolve it a second time.
        """
        router = self._router
        seen: set[tuple[str, str]] = set()
        out: list[Recipient] = []
        kept: dict[str, Route] = {}
        for rcpt in env.recipients:
            if rcpt.final or rcpt.original:
                # Already expanded (or done): itself only, never expanded again.
                route = router.resolve(rcpt.address, expand_aliases=False)[0]
                key = router.delivery_key(route)
                if not rcpt.final and key in seen:
                    continue  # an earlier recipient covers it
                seen.add(key)
                out.append(rcpt)
                if not rcpt.final:
                    kept[rcpt.address] = route
                continue
            routes = router.resolve(rcpt.address)
            if not routes:
                out.append(rcpt)
                continue
            fresh = [r for r in routes if router.delivery_key(r) not in seen]
            seen.update(router.delivery_key(r) for r in routes)
            if [r.address for r in routes] == [rcpt.address.lower()]:
                if fresh:
                    kept[rcpt.address] = routes[0]
                    out.append(rcpt)
                continue  # else: a repeat, merged away
            for route in fresh:
                out.append(
                    replace(
                        rcpt,
                        address=route.address,
                        original=rcpt.address,
                        status=RecipientStatus.PENDING,
                        diagnostic="",
                    )
                )
        env.recipients = out
        return kept
