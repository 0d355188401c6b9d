"""When to try again, when to give up, when to warn: pure rules of time.

Contract (CONTRIBUTING.md, rules 2 and 10: time is an argument, scheduling is tested apart):
  * Nothing here reads the clock, sleeps, does I/O or draws its own random
    numbers: `now` and `rng` come from the caller, so tests use integers and
    a stub rng. The queue manager is the only caller in production.
  * `next_attempt(now, attempts, rng)`: when to try a deferred message again.
    Rule 1: the delay is `min_backoff * 2**(attempts-1)` (attempts = delivery
    runs that ended deferred, counting the one that just ended), capped at
    `max_backoff`; then +-10 % jitter so messages deferred together (a
    destination that went down) do not all come back in the same second;
    then capped again, so the delay never exceeds `max_backoff`. Postfix's
    `minimal_backoff_time`/`maximal_backoff_time` play the same roles
    (Postfix grows the delay with the message age; doubling per attempt is
    the same curve for a message retried on schedule).
  * `expired(received_at, now, max_lifetime)`: Rule 2: a message is expired
    once it has been queued for `max_lifetime` seconds or more; 0 means
    "try once" (Postfix `maximal_queue_lifetime = 0`). The manager bounces
    what is left with 4.4.7 (RFC 3463 "delivery time expired").
  * `delay_warning_due(...)`: Rule 3: at most one delay warning per message,
    once it has waited `delay_warning` seconds; 0 switches warnings off.
  * Fairness between new and deferred mail (Rule 4) is the store's due()
    query: pigeon/queue/schedule.py. Destinations (Rules 5, 6) are
    qmgr/destinations.py.

Failure modes: none; invalid arguments (negative counts) raise ValueError.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["JITTER", "Rng", "delay_warning_due", "expired", "next_attempt"]

JITTER = 0.10  # +-10 % of the backoff


class Rng(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


def next_attempt(
    now: float, attempts: int, rng: Rng, *, min_backoff: float = 300.0, max_backoff: float = 4000.0
) -> float:
    """Absolute time of the next delivery attempt (Rule 1)."""
    if attempts < 0:
        raise ValueError("attempts must be >= 0")
    # 2**k overflows float for absurd k; the cap is reached long before 64.
    base = min(min_backoff * 2.0 ** min(max(attempts - 1, 0), 64), max_backoff)
    delay = base * (1.0 + rng.uniform(-JITTER, JITTER))
    return now + min(delay, max_backoff)


def expired(received_at: float, now: float, max_lifetime: float) -> bool:
    """True when the message has been queued for `max_lifetime` s or longer (Rule 2)."""
    return now - received_at >= max_lifetime


def delay_warning_due(
    received_at: float, now: float, delay_warning: float, already_warned: bool
) -> bool:
    """True when the one delay warning of this message should go out now (Rule 3)."""
    return delay_warning > 0 and not already_warned and now - received_at >= delay_warning
