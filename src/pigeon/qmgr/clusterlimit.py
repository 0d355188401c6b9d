"""The per-destination concurrency limit across every node of a shared queue.

Contract (issue 17: per-destination concurrency limits hold across the cluster):
  * `ClusterLimit(slots, limit)` wraps a store's `ClusterSlots`
    (qmgr/ports.py; PostgreSQL advisory locks, pigeon/store/pg/slots.py).
    `async with limit.hold(destination):` waits until one of the
    destination's `limit` cluster-wide slots is free and holds it for the
    block. The node's own limit (qmgr/destinations.py Rule 5, taken first
    by qmgr/attempt.py) is unchanged; this is the second, cluster-wide one.
    The embedded store has no `ClusterSlots`: the manager has no
    ClusterLimit and its path is today's.
  * Waiting polls (`try_acquire` never blocks a database connection),
    from POLL_MIN seconds doubling to POLL_MAX, so a slot another node
    frees is taken within POLL_MAX.
  * Slots are kept for a moment after use ("parked"): a delivery that
    ends hands its slot to the node's next delivery to the same
    destination without a database round trip (two per delivery cost a
    quarter of one node's delivery rate: docs/benchmarks.md). A parked
    slot counts against the limit like any held one. It goes back to the
    database once unused for PARK_IDLE seconds, and a slot first taken
    more than KEEP_MAX seconds ago is given back instead of parked, so
    under load every slot passes through the database at least every
    KEEP_MAX seconds and the other nodes' waiting deliveries (polling)
    get their turn. A parked slot whose database session ended (the
    connection dropped: PostgreSQL released it) is never reused.
  * Cancellation (a stop abandoning deliveries, qmgr/inflight.py) never
    leaks a slot: an acquire still running in its thread when the task is
    cancelled releases what it got once it returns.
  * A database error while acquiring is logged (a warning, once per
    failing episode) and the delivery goes on under the node's own limit
    only: mail keeps moving on the nodes that can deliver, and the
    database being unreachable stops new claims anyway. Releases that
    fail are logged: the slot went with the connection (PostgreSQL frees
    session locks when it ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from pigeon.qmgr.ports import ClusterSlots
from pigeon.qmgr.settle import STORE_ERRORS

__all__ = ["KEEP_MAX", "PARK_IDLE", "POLL_MAX", "POLL_MIN", "ClusterLimit"]

log = logging.getLogger("pigeon.queue")

POLL_MIN = 0.05  # seconds
POLL_MAX = 1.0
PARK_IDLE = 0.1  # seconds a parked slot waits for the next delivery
KEEP_MAX = 1.0  # seconds a slot may be reused before it goes back


@dataclass(slots=True)
class _Kept:
    """A slot this node holds: since when (from the database), parked when."""

    slot: Any
    taken: float
    parked: float = 0.0


class ClusterLimit:
    """Cluster-wide slots per destination (see the module contract)."""

    def __init__(
        self, slots: ClusterSlots, limit: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.slots = slots
        self.limit = limit
        self._clock = clock
        self._failing = False
        self._parked: dict[str, list[_Kept]] = {}
        self._reaper: asyncio.TimerHandle | None = None
        self._releasing: set[asyncio.Future[None]] = set()  # kept alive until done

    @contextlib.asynccontextmanager
    async def hold(self, destination: str) -> AsyncIterator[None]:
        kept = self._unpark(destination)
        if kept is None:
            slot = await self._acquire(destination)
            kept = None if slot is None else _Kept(slot, self._clock())
        try:
            yield
        finally:
            if kept is not None:
                await self._park_or_release(destination, kept)

    def parked(self) -> int:
        """How many slots are parked (tests, statistics)."""
        return sum(len(v) for v in self._parked.values())

    def _unpark(self, destination: str) -> _Kept | None:
        pile = self._parked.get(destination)
        while pile:
            kept = pile.pop()
            if not pile:
                del self._parked[destination]
            if self.slots.is_held(kept.slot):
                return kept
            pile = self._parked.get(destination)
        return None

    async def _park_or_release(self, destination: str, kept: _Kept) -> None:
        now = self._clock()
        if now - kept.taken >= KEEP_MAX or not self.slots.is_held(kept.slot):
            await self._release(kept.slot)
            return
        kept.parked = now
        self._parked.setdefault(destination, []).append(kept)
        if self._reaper is None:
            loop = asyncio.get_running_loop()
            self._reaper = loop.call_later(PARK_IDLE, self._reap)

    def _reap(self) -> None:
        """Give back the slots parked PARK_IDLE seconds ago or more."""
        self._reaper = None
        now = self._clock()
        for destination in list(self._parked):
            pile = self._parked[destination]
            old = [k for k in pile if now - k.parked >= PARK_IDLE]
            pile[:] = [k for k in pile if now - k.parked < PARK_IDLE]
            if not pile:
                del self._parked[destination]
            for kept in old:
                self._background(self._release(kept.slot))
        if self._parked:
            self._reaper = asyncio.get_running_loop().call_later(PARK_IDLE, self._reap)

    async def _acquire(self, destination: str) -> Any:
        delay = POLL_MIN
        while True:
            job = asyncio.ensure_future(
                asyncio.to_thread(self.slots.try_acquire, destination, self.limit)
            )
            try:
                slot = await asyncio.shield(job)
            except asyncio.CancelledError:
                job.add_done_callback(self._release_late)
                raise
            except STORE_ERRORS as exc:
                if not self._failing:
                    log.warning(
                        "cluster-wide slots for %s unavailable (%s): node limit only",
                        destination,
                        exc,
                    )
                self._failing = True
                return None
            self._failing = False
            if slot is not None:
                return slot
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX)

    async def _release(self, slot: Any) -> None:
        try:
            await asyncio.shield(asyncio.to_thread(self.slots.release, slot))
        except STORE_ERRORS as exc:
            log.warning("cluster-wide slot release failed (the server frees it): %s", exc)

    def _release_late(self, job: asyncio.Future[Any]) -> None:
        """An acquire that finished after its task was cancelled: give back its slot."""
        if job.cancelled() or job.exception() is not None or job.result() is None:
            return
        self._background(self._release(job.result()))

    def _background(self, release: Any) -> None:
        task = asyncio.ensure_future(release)
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)
