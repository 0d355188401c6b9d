"""Fairness between new and deferred mail: how the store's due() shares its slots.

Contract (CONTRIBUTING.md, rule 10: scheduling is pure and tested apart):
  * `split_slots(free, incoming, deferred)`: Rule 4 (fairness, Postfix qmgr
    STRATEGIES): new mail never waits behind a deferred backlog. Each class
    gets up to half the free slots; slots one class cannot use go to the
    other. The store's `due()` (queue/store.py) applies it to what its two
    index searches found.
  * Pure: no clock, no I/O. The rest of scheduling (backoff, expiry, delay
    warnings, destinations, the manager's active window and wake-ups) is
    the queue manager's: pigeon/qmgr/timing.py, destinations.py, scheduler.py.

Failure modes: negative counts raise ValueError.
"""

from __future__ import annotations

__all__ = ["split_slots"]


def split_slots(free: int, incoming: int, deferred: int) -> tuple[int, int]:
    """How many (incoming, deferred) messages to take with `free` slots (Rule 4).

    `incoming` and `deferred` are how many of each are due (or at least
    `free` when there are more).
    """
    if free < 0 or incoming < 0 or deferred < 0:
        raise ValueError("negative count")
    half_in = (free + 1) // 2  # incoming gets the odd slot
    take_in = min(incoming, max(half_in, free - deferred))
    take_def = min(deferred, free - take_in)
    return take_in, take_def
