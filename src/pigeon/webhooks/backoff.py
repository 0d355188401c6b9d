"""When a failed POST is tried again, and when an event is given up (docs/webhooks.md).

Contract (CONTRIBUTING.md rule 10: scheduling is pure; time is an argument):
  * `delay(failures)` is the wait after the `failures`-th failed POST of an
    event: FIRST_DELAY (10 s) doubling each time, capped at MAX_DELAY (1 h):
    10, 20, 40, ... 2560, 3600, 3600 ...
  * `next_try(created, failures, now, max_age)` is the Unix time of the
    next POST, or None when that would fall after `created + max_age`: the
    event is then dropped (and logged by the caller). One last try is made
    at the deadline itself when the wait overshoots it by less than a full
    delay, so the receiver gets every chance within `max_age`.
"""

from __future__ import annotations

__all__ = ["FIRST_DELAY", "MAX_DELAY", "delay", "next_try"]

FIRST_DELAY = 10.0
MAX_DELAY = 3600.0


def delay(failures: int) -> float:
    """Seconds to wait after the `failures`-th failure (1 = the first)."""
    if failures < 1:
        return 0.0
    return min(MAX_DELAY, FIRST_DELAY * 2.0 ** min(failures - 1, 30))


def next_try(created: float, failures: int, now: float, max_age: float) -> float | None:
    """When to POST again after `failures` failures, or None to give up."""
    deadline = created + max_age
    if now >= deadline:
        return None
    return min(now + delay(failures), deadline)
