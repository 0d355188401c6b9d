"""The queue manager's scheduler: what to start, when to wake, pure (time is an argument).

Contract (CONTRIBUTING.md, rules 2 and 10): the `Scheduler` holds the
manager's scheduling state and answers its questions from it; it never
reads the clock (every method that needs the time takes `now`), never
sleeps, never touches the store and starts nothing: the runner
(qmgr/runner.py) asks, does the I/O, and reports back. Tests drive it with
integer times.

  * The active window: at most `concurrency` messages in delivery at once
    (`inflight`); `free_slots()` is what may start now. An entry is *owned*
    (never started twice, never swept) while a delivery runs it, while an
    outcome that could not be written waits in `unsaved`, or while it waits
    in `requeue` (qmgr/settle.py Rule 1).
  * Fresh mail (the fast path): `submit(envelope)` keeps a committed
    envelope in a FIFO of at most `fresh_limit`; past it, the row waits in
    the database and a scan is asked for. `take_fresh()` hands out what fits
    the window, oldest first, skipping owned ids.
  * Scans (the database, fair between new and deferred mail: the store's
    due(), queue/schedule.py) are needed only for a reason: start-up, a
    nudge (worker processes, operator release/requeue/flush, ETRN, a report
    the manager enqueued), the cached next retry time reached, an
    overflowing FIFO, a scan that filled every free slot, and the wait
    timing out (`run_interval`, the safety net). A scan drops the FIFO:
    those rows are 'incoming' and due() finds them in its fair order.
  * Next retry: the earliest `next_attempt` of a deferred row is cached:
    read after each scan and lowered by each deferral (`note_retry`), never
    polled. A deferral written while a scan reads is kept apart and merged
    when the scan ends, so the cache never misses it.
  * Storage back-off (qmgr/settle.py Rule 2): after a failed store call the
    first retry round is due `store_retry` seconds later, the delay doubling
    while failures go on, up to BACKOFF_CAP x `store_retry`; until then
    nothing is scanned or started (`held`). A round that writes everything
    resets the delay and asks for a sweep. Maildir storage faults come back
    after `mailbox_retry_at()`: `store_retry` at first, then a quarter of
    the fault's age, at most the cap.
  * Sweep (settle.py Rule 1): `lost(active_ids)` names the 'active' entries
    nobody owns; they join `requeue`.
  * Destinations (qmgr/destinations.py) and mail waiting for a next hop
    (qmgr/waiting.py): `hop_is_back()` makes the waiting mail due now;
    every `probe_interval` `waiting_due()` picks one message per idle next
    hop as a probe (its dead state forgotten).
  * Wake-up: `sleep_time(now)` is how long the runner may sleep: 0 when
    work can start now; else until the earliest of the next storage round,
    the next probe, the cached retry time (only with free slots: a
    finishing delivery wakes the runner otherwise) and `run_interval`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Collection, Hashable, Iterable

from pigeon.qmgr.destinations import DestinationState
from pigeon.qmgr.results import Settlement
from pigeon.qmgr.settings import QmgrSettings
from pigeon.qmgr.waiting import NexthopWaiters
from pigeon.queue.model import Envelope
from pigeon.vocab import Nexthop

__all__ = ["BACKOFF_CAP", "Scheduler"]

log = logging.getLogger("pigeon.queue")

#: The storage back-off grows up to this many times `store_retry`.
BACKOFF_CAP = 16


def _equal_to(hop: Hashable) -> Callable[[Hashable], bool]:
    return lambda key: key == hop


def _earliest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


class Scheduler:
    """The manager's scheduling state; see the module contract."""

    def __init__(self, settings: QmgrSettings) -> None:
        self.concurrency = settings.concurrency
        self.run_interval = settings.run_interval
        self.store_retry = settings.store_retry
        self.probe_interval = settings.probe_interval
        self.fresh_limit = settings.fresh_limit
        # The active window and what is owned outside it.
        self.inflight: set[str] = set()
        self.unsaved: dict[str, Settlement] = {}
        self.requeue: set[str] = set()
        # Fresh mail and scans.
        self.fresh: deque[Envelope] = deque()
        self.scan_needed = True
        self.sweep_needed = False
        self.next_retry: float | None = None
        self._retry_in_scan: float | None = None
        # Storage back-off.
        self.storage_delay = settings.store_retry
        self.storage_due: float | None = None
        self.held_until = 0.0
        # Destinations and mail waiting for a next hop.
        self.dests = DestinationState(
            concurrency=settings.destination_concurrency,
            failure_limit=settings.destination_failure_limit,
            dead_time=settings.min_backoff,
        )
        self.waiters = NexthopWaiters()
        self.next_probe: float | None = None
        self.due_now: set[str] = set()

    # --- the window ---------------------------------------------------------------

    def owned(self, qid: str) -> bool:
        """A delivery, an unsaved outcome or a pending requeue owns `qid`."""
        return qid in self.inflight or qid in self.unsaved or qid in self.requeue

    def free_slots(self) -> int:
        return self.concurrency - len(self.inflight)

    def started(self, ids: Iterable[str]) -> None:
        self.inflight.update(ids)

    def finished(self, qid: str) -> None:
        self.inflight.discard(qid)

    # --- reasons to look ------------------------------------------------------------

    def submit(self, envelope: Envelope) -> None:
        """A committed envelope for the fast path (module contract)."""
        if len(self.fresh) >= self.fresh_limit:
            self.scan_needed = True  # its row waits in the database
        else:
            self.fresh.append(envelope)

    def nudge(self) -> None:
        self.scan_needed = True

    def timed_out(self) -> None:
        """The runner's wait ran out: a retry became due, or run_interval passed."""
        self.scan_needed = True
        self.sweep_needed = True

    def begin_round(self, now: float, *, degraded: bool, quiet: float) -> None:
        """Start of a round of work: a cached retry time reached asks for a
        scan; degraded storage with no round planned gets one (its probe
        notices the recovery)."""
        if self.next_retry is not None and self.next_retry <= now:
            self.scan_needed = True
        if self.storage_due is None and degraded:
            self.storage_due = now + max(self.store_retry, quiet)

    def take_fresh(self) -> dict[str, Envelope]:
        """Fresh envelopes to start now, by queue id, at most the free slots."""
        batch: dict[str, Envelope] = {}
        room = self.free_slots()
        while self.fresh and len(batch) < room:
            env = self.fresh.popleft()
            if not self.owned(env.queue_id):
                batch[env.queue_id] = env
        return batch

    def begin_scan(self) -> tuple[int, frozenset[str]]:
        """A scan starts: (free slots, ids it must not take)."""
        self.fresh.clear()  # their rows are 'incoming': due() finds them
        self.scan_needed = False  # a nudge() during the scan sets it again
        self._retry_in_scan = None
        return self.free_slots(), frozenset(self.inflight | self.unsaved.keys() | self.requeue)

    def end_scan(self, taken: Iterable[str], *, full: bool, next_retry: float | None) -> None:
        """The scan took `taken`; `full`: it filled every free slot (more may wait)."""
        self.next_retry = _earliest(next_retry, self._retry_in_scan)
        if full:
            self.scan_needed = True
        self.inflight.update(taken)

    def scan_failed(self) -> None:
        self.scan_needed = True

    def note_retry(self, when: float) -> None:
        """A row became 'deferred' until `when`: keep the cached next retry right."""
        self.next_retry = _earliest(self.next_retry, when)
        self._retry_in_scan = _earliest(self._retry_in_scan, when)

    def sleep_time(self, now: float) -> float:
        """Seconds the runner may sleep before it must look again (module contract)."""
        wake = now + self.run_interval
        if self.storage_due is not None:
            wake = min(wake, self.storage_due)
        if self.waiters and self.next_probe is not None:
            wake = min(wake, self.next_probe)
        if now < self.held_until:
            return min(wake, self.held_until) - now  # a store call failed: wait
        if self.due_now:
            return 0.0
        if self.free_slots() > 0:  # else a finishing delivery wakes us
            if self.scan_needed or self.fresh:
                return 0.0
            if self.next_retry is not None:
                wake = min(wake, self.next_retry)
        return max(0.0, wake - now)

    # --- the storage back-off -------------------------------------------------------

    def held(self, now: float) -> bool:
        """A store call failed lately: no scan or start before the retry round."""
        return now < self.held_until

    def storage_failed(self, now: float) -> None:
        """A store call failed: plan the retry round (module contract)."""
        if self.storage_due is None:
            self.storage_due = now + self.storage_delay
            self.storage_delay = min(self.storage_delay * 2, self.store_retry * BACKOFF_CAP)
        self.held_until = max(self.held_until, self.storage_due)

    def storage_round_due(self, now: float) -> bool:
        return self.storage_due is not None and now >= self.storage_due

    def begin_storage_round(self) -> None:
        self.storage_due = None

    def storage_writes_ok(self) -> None:
        """A round wrote everything: the back-off starts over, and the sweep
        finds what a failure left 'active'."""
        self.storage_delay = self.store_retry
        self.sweep_needed = True

    def recheck_storage(self, now: float, quiet: float) -> None:
        """Writes work but an episode is not over: come back, so its end is
        noticed (and logged) without new mail."""
        self.storage_due = now + max(self.store_retry, quiet)

    def recovered(self) -> None:
        """The store's recovery at start-up worked."""
        self.storage_delay, self.held_until = self.store_retry, 0.0

    def mailbox_retry_at(self, now: float, since: float | None) -> float:
        """When a local delivery our Maildir storage failed comes back."""
        age = now - since if since is not None else 0.0
        cap = self.store_retry * BACKOFF_CAP
        return now + min(max(self.store_retry, age / 4), cap)

    # --- requeue and sweep ------------------------------------------------------------

    def to_requeue(self) -> list[str]:
        """The entries to move back to 'incoming' now (a delivery or an
        unsaved outcome owns the others)."""
        self.requeue.difference_update(self.inflight, self.unsaved.keys())
        return sorted(self.requeue)

    def requeued(self, ids: Iterable[str]) -> None:
        self.requeue.difference_update(ids)
        self.scan_needed = True  # rows already 'incoming' are found by due() too

    def sweep_due(self, now: float) -> bool:
        return self.sweep_needed and now >= self.held_until

    def lost(self, active: Iterable[str]) -> list[str]:
        """The 'active' entries nobody owns; they are to be requeued."""
        lost = [qid for qid in active if not self.owned(qid)]
        self.requeue.update(lost)
        return lost

    # --- next hops ---------------------------------------------------------------------

    def waits_for(self, nexthop: Nexthop, qid: str) -> None:
        self.waiters.add(nexthop, qid)

    def removed(self, qid: str) -> None:
        """`qid` left the queue."""
        self.waiters.forget(qid)

    def hop_is_back(self, nexthop: Nexthop, qid: str) -> list[str]:
        """A delivery by `qid` through `nexthop` succeeded: what waits for it is due now."""
        ids = [q for q in self.waiters.take(nexthop) if q != qid]
        self.due_now.update(ids)
        return ids

    def has_waiting_work(self) -> bool:
        return bool(self.waiters) or bool(self.due_now)

    def waiting_due(self, now: float) -> list[str]:
        """The deferred ids to make due now: those whose hop came back, and
        one probe per idle next hop every `probe_interval`."""
        if self.waiters and (self.next_probe is None or now >= self.next_probe):
            if self.next_probe is not None:
                busy_hop = lambda hop: self.dests.in_flight(hop) > 0
                for hop, qid in self.waiters.probes(busy_hop, self.owned):
                    self.dests.revive(_equal_to(hop))
                    self.due_now.add(qid)
                    log.debug("queue_id=%s: probing next hop %s", qid, hop)
            self.next_probe = now + self.probe_interval
        elif not self.waiters:
            self.next_probe = None
        return sorted(self.due_now)

    def waiting_moved(self, ids: Collection[str], moved: Collection[str], now: float) -> None:
        """`moved` of `ids` are due now in the store; the others are no longer deferred."""
        self.due_now.difference_update(ids)
        for qid in set(ids).difference(moved):
            self.waiters.forget(qid)  # delivered, held or removed meanwhile
        if moved:
            self.note_retry(now)
            self.scan_needed = True
