"""Messages waiting for a next hop that could not be reached, by next hop.

Contract (`NexthopWaiters` is pure bookkeeping; the scheduler applies the
rules, qmgr/scheduler.py, and the runner moves the entries it names):
  * Rule 1: a message is added for a next hop when a recipient of it was
    deferred there with a network or routing status (RFC 3463 X.4.X: no
    answer, bad connection, routing, congestion), or got no attempt
    because the destination is dead (destinations.py Rule 6, 4.4.1). Deferrals
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

from collections.abc import Callable, Hashable, Iterable

__all__ = ["NexthopWaiters", "waits_for_hop"]


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
