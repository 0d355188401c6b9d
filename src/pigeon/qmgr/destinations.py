"""Per-destination bookkeeping: concurrency ceilings and dead destinations.

Contract (CONTRIBUTING.md, rules 2 and 10: time is an argument, scheduling is tested apart):
  * `DestinationState`: per-next-hop state, pure (no clock: `now` is an
    argument, no I/O). The queue manager keys it by `Nexthop`.
  * Rule 5: at most `concurrency` deliveries in flight per destination.
  * Rule 6: after `failure_limit` consecutive connection-level failures
    (every recipient deferred, no peer reached) the destination is dead
    until `now + dead_time`; while dead, messages for it are deferred
    without an attempt (Postfix qmgr "delivery temporarily suspended").
    When the dead time ends, the next request is a probe: one more failure
    kills it again at once, one success (any peer reached) revives it and
    resets the count.
  * Entries that are idle and healthy are dropped, so memory follows the
    destinations in use, not every domain ever seen.

Failure modes: invalid arguments raise ValueError; `release()` without
`acquire()` is a ValueError (a bug of the caller).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["DestinationState"]


@dataclass(slots=True)
class _Dest:
    in_flight: int = 0
    failures: int = 0  # consecutive connection-level failures
    dead_until: float = 0.0
    reason: str = ""  # the last failure's diagnostic, for "suspended" lines


class DestinationState:
    """Concurrency and liveness per destination (Rules 5 and 6).

    Keys are any hashable value; the manager uses `Nexthop`. Entries that
    are idle and healthy are dropped, so memory follows the destinations in
    use, not every domain ever seen.
    """

    def __init__(
        self, *, concurrency: int = 20, failure_limit: int = 3, dead_time: float = 300.0
    ) -> None:
        if concurrency < 1 or failure_limit < 1:
            raise ValueError("concurrency and failure_limit must be >= 1")
        self.concurrency = concurrency
        self.failure_limit = failure_limit
        self.dead_time = dead_time
        self._dests: dict[Hashable, _Dest] = {}

    def acquire(self, key: Hashable) -> bool:
        """Take a delivery slot for `key`; False when the ceiling is reached."""
        d = self._dests.setdefault(key, _Dest())
        if d.in_flight >= self.concurrency:
            return False
        d.in_flight += 1
        return True

    def release(self, key: Hashable) -> None:
        """Give back a slot taken with `acquire()`."""
        d = self._dests.get(key)
        if d is None or d.in_flight <= 0:
            raise ValueError(f"release without acquire: {key!r}")
        d.in_flight -= 1
        self._forget_if_idle(key, d)

    def in_flight(self, key: Hashable) -> int:
        d = self._dests.get(key)
        return d.in_flight if d else 0

    def is_dead(self, key: Hashable, now: float) -> bool:
        d = self._dests.get(key)
        return d is not None and now < d.dead_until

    def dead_reason(self, key: Hashable) -> str:
        d = self._dests.get(key)
        return d.reason if d else ""

    def dead_until(self, key: Hashable) -> float:
        d = self._dests.get(key)
        return d.dead_until if d else 0.0

    def record(self, key: Hashable, now: float, *, reached: bool, reason: str = "") -> None:
        """Record one delivery request's result: `reached` = some peer answered."""
        d = self._dests.setdefault(key, _Dest())
        if reached:
            d.failures, d.dead_until, d.reason = 0, 0.0, ""
            self._forget_if_idle(key, d)
            return
        d.failures += 1
        d.reason = reason
        if d.failures >= self.failure_limit:
            d.dead_until = now + self.dead_time

    def revive(self, match: Callable[[Hashable], bool] | None = None) -> int:
        """Forget the failures of every destination (`match`: those it accepts):
        the operator's "flush" says the peer is back. Returns how many were dead
        or failing."""
        revived = 0
        for key, d in list(self._dests.items()):
            if (match is None or match(key)) and (d.failures or d.dead_until):
                d.failures, d.dead_until, d.reason = 0, 0.0, ""
                revived += 1
                self._forget_if_idle(key, d)
        return revived

    def statistics(self, now: float) -> dict[str, int]:
        """Counts for the admin UI: destinations tracked, dead, slots in use."""
        return {
            "destinations": len(self._dests),
            "dead": sum(1 for d in self._dests.values() if now < d.dead_until),
            "in_flight": sum(d.in_flight for d in self._dests.values()),
        }

    def _forget_if_idle(self, key: Hashable, d: _Dest) -> None:
        if d.in_flight == 0 and d.failures == 0:
            del self._dests[key]
