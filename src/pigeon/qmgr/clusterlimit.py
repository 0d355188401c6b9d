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
from collections.abc import AsyncIterator
from typing import Any

from pigeon.qmgr.ports import ClusterSlots
from pigeon.qmgr.settle import STORE_ERRORS

__all__ = ["POLL_MAX", "POLL_MIN", "ClusterLimit"]

log = logging.getLogger("pigeon.queue")

POLL_MIN = 0.05  # seconds
POLL_MAX = 1.0


class ClusterLimit:
    """Cluster-wide slots per destination (see the module contract)."""

    def __init__(self, slots: ClusterSlots, limit: int) -> None:
        self.slots = slots
        self.limit = limit
        self._failing = False

    @contextlib.asynccontextmanager
    async def hold(self, destination: str) -> AsyncIterator[None]:
        slot = await self._acquire(destination)
        try:
            yield
        finally:
            if slot is not None:
                await self._release(slot)

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
        asyncio.ensure_future(self._release(job.result()))
