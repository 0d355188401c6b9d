"""Messages waiting for a next hop that could not be reached, by next hop.

Contract (`NexthopWaiters` is pure bookkeeping; the `WaitingForHops`
methods of the queue manager apply the rules):
  * Rule 1: a message is added for a next hop when a recipient of it was
    deferred there with a network or routing status (RFC 3463 X.4.X: no
    answer, bad connection, routing, congestion), or got no attempt
    because the destination is dead (schedule.py Rule 6, 4.4.1). Deferrals
    the peer chose (4.2.X mailbox full, 4.7.X greylisting...) are not
    added: the peer answered, nothing says it is "back" later.
  * Rule 2 (the hop is back): when a delivery through a next hop succeeds,
    `take(hop)` returns every message waiting for it, and the manager
    makes them due at once instead of waiting out their backoff.
  * Rule 3 (probe): every probe interval the manager asks `probes()` for
    one waiting message per next hop that has no delivery in flight, and
    retries just that one now (its destination's dead state forgotten);
    if it gets through, Rule 2 brings the rest. So mail for a next hop
    that comes back is retried within one probe interval, whatever its
    backoff, and a hop that stays down costs one attempt per interval.
  * Memory is bounded: at most `limit` messages per next hop (older ones
    are dropped from the index, not from the queue: they keep their
    ordinary backoff). The index lives in memory only: after a restart a
    hop's messages join it again at their next failed attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING

from pigeon.queue.settle import STORE_ERRORS

if TYPE_CHECKING:
    from pigeon.queue.manager import QueueManager
    from pigeon.vocab import Nexthop

__all__ = ["NexthopWaiters", "WaitingForHops", "waits_for_hop"]

log = logging.getLogger("pigeon.queue")


def waits_for_hop(dsn_status: str) -> bool:
    """Rule 1: does this deferral status say the next hop could not be reached?"""
    return dsn_status.startswith("4.4.")


class NexthopWaiters:
    """queue ids by next hop, oldest first; see the module contract."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._by_hop: dict[Hashable, dict[str, None]] = {}

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._by_hop.values())

    def __bool__(self) -> bool:
        return bool(self._by_hop)

    def add(self, hop: Hashable, qid: str) -> None:
        ids = self._by_hop.setdefault(hop, {})
        ids[qid] = None
        if len(ids) > self.limit:
            del ids[next(iter(ids))]

    def forget(self, qid: str) -> None:
        """`qid` left the queue (or no longer waits): drop it everywhere."""
        for hop in [h for h, ids in self._by_hop.items() if qid in ids]:
            ids = self._by_hop[hop]
            del ids[qid]
            if not ids:
                del self._by_hop[hop]

    def take(self, hop: Hashable) -> list[str]:
        """Rule 2: every message waiting for `hop`, removed from the index."""
        return list(self._by_hop.pop(hop, {}))

    def probes(
        self, busy_hop: Callable[[Hashable], bool], busy_id: Callable[[str], bool]
    ) -> Iterable[tuple[Hashable, str]]:
        """Rule 3: (hop, qid) for each hop not `busy_hop`, its oldest message not `busy_id`."""
        for hop, ids in list(self._by_hop.items()):
            if busy_hop(hop):
                continue
            qid = next((q for q in ids if not busy_id(q)), None)
            if qid is not None:
                yield hop, qid


class WaitingForHops:
    """Mixed into QueueManager: the manager's side of Rules 2 and 3."""

    async def _retry_waiting(self: QueueManager, now: float) -> None:
        """Make mail waiting for a next hop due now (queue/waiting.py Rules 2, 3).
        Call with the operator lock held."""
        if self._waiters and (self._next_probe is None or now >= self._next_probe):
            if self._next_probe is not None:
                for hop, qid in self._waiters.probes(
                    lambda h: self._dests.in_flight(h) > 0, self._owned
                ):
                    self._dests.revive(lambda key, hop=hop: key == hop)
                    self._due_now.add(qid)
                    log.debug("queue_id=%s: probing next hop %s", qid, hop)
            self._next_probe = now + self._probe_interval
        elif not self._waiters:
            self._next_probe = None
        if not self._due_now:
            return
        ids = sorted(self._due_now)
        try:
            moved = await asyncio.to_thread(
                self._store.move, ids, "deferred", now, from_states=("deferred",)
            )
        except STORE_ERRORS as exc:
            self._write_failed(exc, "cannot retry mail waiting for a next hop")
            return
        self._due_now.difference_update(ids)
        for qid in set(ids).difference(moved):
            self._waiters.forget(qid)  # no longer deferred: delivered, held, removed
        if moved:
            self._note_retry(now)
            self._scan_needed = True

    def _hop_is_back(self: QueueManager, nh: Nexthop, qid: str) -> None:
        """A delivery through `nh` succeeded: retry what waits for it (waiting.py Rule 2)."""
        ids = [q for q in self._waiters.take(nh) if q != qid]
        if ids:
            log.info("next hop %s answers again: retrying %d deferred message(s) now", nh, len(ids))
            self._due_now.update(ids)
            self._wake.set()
