"""The queue manager: the single owner of queue state (STYLE 3.8, Postfix qmgr).

Contract:
  * Only the manager changes queue state: it calls the manager-side API of
    `QueueStore` (recover, due, load, set_state, update, remove), always via
    `asyncio.to_thread` because those calls wait for fsync. The SMTP side only
    commits new messages and calls `nudge()`.
  * `run()` first calls `store.recover()`, then loops: take due messages (at
    most `concurrency` in flight), deliver them, sleep until nudged, until the
    next entry is due, or `run_interval` at most.
  * Delivering one message: mark it 'active'; alias-expand pending recipients
    (each expansion becomes its own recipient with `original` set, so retries
    neither re-expand nor redeliver the parts already done); deliver local
    routes to Maildir in a worker thread; leave remote routes PENDING ("remote
    delivery not available yet"); then ONE durable `store.update()` (or
    `store.remove()` when every recipient is final), and only after that the
    maillog lines. Rule: the log never says "sent" for a state that a crash
    could roll back.
  * Retry: a message with non-final recipients goes to 'deferred'. Only remote
    recipients waiting: next_attempt = now + run_interval. A local delivery
    error: backoff min(run_interval * 2**attempts, 3600) s. (The real
    scheduler with jitter and expiry is queue/schedule.py, a later issue.)
  * A local address with no mailbox at delivery time (an alias pointing
    nowhere, or a mailbox removed from the config since RCPT) is BOUNCED with
    5.1.1. No non-delivery report is generated yet (bounce.py, later issue);
    the maillog line says status=bounced.
  * Nothing escapes the loop: a corrupt entry is quarantined by the store and
    skipped; an unexpected exception while delivering one message is logged
    and the message is deferred with backoff.

Delivery is at-least-once: a crash between a Maildir write and the following
`store.update()` delivers that recipient again after restart. Exactly-once
would need a per-recipient journal fsync before every Maildir write; a rare
duplicate is the standard MTA trade-off (Postfix makes the same one).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any, Callable, Protocol

from pigeon.delivery.maildir import deliver_to_maildir
from pigeon.queue.model import Envelope, Recipient, RecipientStatus
from pigeon.queue.store import CorruptEntry, QueueStore, StoreError
from pigeon.routing.resolve import Route, Router

log = logging.getLogger("pigeon.queue")

MAX_BACKOFF = 3600.0
REMOTE_UNAVAILABLE = "remote delivery not available yet"


class MailLog(Protocol):
    def log(self, queue_id: str, fields: dict, detail: str | None = None) -> None: ...


class QueueManager:
    """Moves committed messages to their destinations; see the module contract."""

    def __init__(self, store: QueueStore, router: Router, *, hostname: str, maillog: MailLog,
                 fsync: bool = True, clock: Callable[[], float] = time.time,
                 run_interval: float = 60.0, concurrency: int = 8) -> None:
        self._store = store
        self._router = router
        self._hostname = hostname
        self._maillog = maillog
        self._fsync = fsync
        self._clock = clock
        self._run_interval = run_interval
        self._concurrency = concurrency
        self._wake = asyncio.Event()
        self._stopping = False
        self._running = False
        self._stopped = asyncio.Event()
        self._inflight: set[str] = set()
        self._counters = {"delivered": 0, "deferred": 0, "bounced": 0, "removed": 0,
                          "errors": 0}

    # --- control ------------------------------------------------------------------

    def nudge(self) -> None:
        """Wake the manager to look for due messages now. Idempotent, cheap;
        call it from the event loop thread (e.g. right after a 250)."""
        self._wake.set()

    async def stop(self) -> None:
        """Start no new deliveries, wait for those in flight, then return."""
        self._stopping = True
        self._wake.set()
        if self._running:
            await self._stopped.wait()

    def statistics(self) -> dict[str, Any]:
        """Snapshot for the admin UI/CLI: queue counts by state plus counters.

        Reads the database on the calling thread (a quick indexed query).
        """
        return {"queue": self._store.counts(), "in_flight": len(self._inflight),
                "running": self._running, **self._counters}

    async def run(self) -> None:
        """Recover the store, then deliver until `stop()`."""
        self._running = True
        self._stopped.clear()
        try:
            report = await asyncio.to_thread(self._store.recover)
            log.info("queue recovered: %d entries, %d reactivated, %d corrupt",
                     report.queued, len(report.reactivated), len(report.missing_content))
            async with asyncio.TaskGroup() as tg:
                while not self._stopping:
                    self._wake.clear()
                    await self._start_due(tg)
                    try:
                        await asyncio.wait_for(self._wake.wait(), await self._sleep_time())
                    except TimeoutError:
                        pass
        finally:
            self._running = False
            self._stopped.set()

    async def _start_due(self, tg: asyncio.TaskGroup) -> None:
        free = self._concurrency - len(self._inflight)
        if free <= 0:
            return
        # Ask for more than `free`: some of the due ones may already be in flight.
        ids = await asyncio.to_thread(self._store.due, self._clock(),
                                      free + len(self._inflight))
        new = [q for q in ids if q not in self._inflight][:free]
        if not new:
            return
        # Mark them active in one transaction before starting: due() and
        # next_due() then stop returning them, so the loop cannot spin on them.
        await asyncio.to_thread(self._store.mark_active, new)
        for qid in new:
            self._inflight.add(qid)
            tg.create_task(self._deliver_fenced(qid))

    async def _sleep_time(self) -> float:
        if len(self._inflight) >= self._concurrency:
            return self._run_interval      # a finishing delivery nudges us
        nxt = await asyncio.to_thread(self._store.next_due)
        if nxt is None:
            return self._run_interval
        return min(self._run_interval, max(0.0, nxt - self._clock()))

    # --- one message ---------------------------------------------------------------

    async def _deliver_fenced(self, qid: str) -> None:
        """Exception fence: one bad message never stops the manager."""
        try:
            await self.deliver(qid)
        except CorruptEntry:
            self._counters["errors"] += 1      # the store logged and quarantined it
        except Exception:
            self._counters["errors"] += 1
            log.exception("queue_id=%s: delivery failed unexpectedly; deferring", qid)
            try:
                await asyncio.to_thread(self._store.set_state, qid, "deferred",
                                        self._clock() + self._run_interval)
            except StoreError:
                log.exception("queue_id=%s: could not defer", qid)
        finally:
            self._inflight.discard(qid)
            self._wake.set()

    async def deliver(self, qid: str) -> None:
        """Deliver every non-final recipient of one message (see module contract).

        The entry should be 'active' (run() marks it); exceptions propagate.
        """
        store = self._store
        env = await asyncio.to_thread(store.load, qid)
        self._expand_aliases(env)
        source = store.content_path(qid)
        logs: list[tuple[dict, str]] = []
        local_error = False
        for rcpt in env.recipients:
            if rcpt.final:
                continue
            routes = self._router.resolve(rcpt.address, expand_aliases=False)
            route = routes[0] if routes else Route("remote", rcpt.address, "")
            fields = {"to": rcpt.address}
            if rcpt.original and rcpt.original != rcpt.address:
                fields["orig_to"] = rcpt.original
            if route.kind == "remote":
                rcpt.status, rcpt.diagnostic = RecipientStatus.PENDING, REMOTE_UNAVAILABLE
                fields.update(relay="none", dsn="4.4.0", status="deferred")
                logs.append((fields, REMOTE_UNAVAILABLE))
            elif not self._router.mailbox_exists(route.address):
                rcpt.status = RecipientStatus.BOUNCED
                rcpt.diagnostic = "dsn=5.1.1 no such local mailbox"
                fields.update(relay="local", dsn="5.1.1", status="bounced")
                logs.append((fields, "no such local mailbox"))
            else:
                try:
                    await asyncio.to_thread(deliver_to_maildir, route.target, source,
                                            env.sender, fsync=self._fsync,
                                            delivered_to=route.address)
                except OSError as e:
                    local_error = True
                    rcpt.status = RecipientStatus.DEFERRED
                    rcpt.diagnostic = f"dsn=4.3.0 maildir delivery failed: {e.strerror or e}"
                    fields.update(relay="local", dsn="4.3.0", status="deferred")
                    logs.append((fields, rcpt.diagnostic))
                else:
                    rcpt.status, rcpt.diagnostic = RecipientStatus.DELIVERED, ""
                    fields.update(relay="local", dsn="2.0.0", status="sent")
                    logs.append((fields, "delivered to maildir"))
        now = self._clock()
        delay = round(max(0.0, now - env.received_at), 3) if env.received_at else 0.0
        for fields, _ in logs:
            fields["delay"] = delay
        done = all(r.final for r in env.recipients)
        if done:
            await asyncio.to_thread(store.remove, qid)
        else:
            if local_error:
                wait = min(self._run_interval * 2 ** env.attempts, MAX_BACKOFF)
            else:
                wait = self._run_interval
            env.attempts += 1
            await asyncio.to_thread(store.update, env, "deferred", now + wait)
        # Durable first (above), then the log lines (module Rule).
        for fields, detail in logs:
            self._counters[{"sent": "delivered"}.get(fields["status"], fields["status"])] += 1
            self._maillog.log(qid, fields, detail)
        if done:
            self._counters["removed"] += 1
            self._maillog.log(qid, {"status": "removed"})

    def _expand_aliases(self, env: Envelope) -> None:
        """Replace each pending, not-yet-expanded recipient by its alias
        expansion (deduplicated against the whole envelope). Persisted with
        the message's next update, so it happens once."""
        seen = {r.address.lower() for r in env.recipients}
        out: list[Recipient] = []
        for rcpt in env.recipients:
            if rcpt.final or rcpt.original:
                out.append(rcpt)
                continue
            routes = self._router.resolve(rcpt.address)
            if [r.address for r in routes] == [rcpt.address.lower()] or not routes:
                out.append(rcpt)
                continue
            for route in routes:
                if route.address in seen and route.address != rcpt.address.lower():
                    continue                          # another recipient covers it
                seen.add(route.address)
                out.append(replace(rcpt, address=route.address, original=rcpt.address,
                                   status=RecipientStatus.PENDING, diagnostic=""))
        env.recipients = out
