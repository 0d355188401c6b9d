"""Login rate limiting for the console: failures counted per client address and per name.

Contract:
  * `LoginLimiter(max_failures=5, window=900, cap=4096)`: `retry_after(
    address, name, now)` is None while the address and the name each have
    fewer than `max_failures` failed logins within the last `window`
    seconds, else the seconds (>= 1, rounded up) until the oldest of those
    failures leaves the window; the login page answers 429 with that as
    Retry-After, without checking the password (so a guessing client
    learns nothing, and costs no argon2 verification).
  * `failed(address, name, now)` counts a failure against both keys;
    `succeeded(address, name)` forgets both (a successful login resets).
  * Why both keys: per address stops one client guessing many names; per
    name stops many addresses (a botnet) guessing one admin's password.
    The price is that a stranger can keep a name locked out; the lockout
    is short, every refusal is logged, and `pigeon admin add` makes
    another admin at any time (OWASP Authentication Cheat Sheet, "Account
    lockout").
  * Memory is bounded: each table keeps at most `cap` keys; beyond that
    the key failed longest ago is forgotten first, and each key keeps at
    most `max_failures` timestamps.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque

__all__ = ["LoginLimiter"]


class _Table:
    def __init__(self, max_failures: int, window: float, cap: int) -> None:
        self.max_failures = max_failures
        self.window = window
        self.cap = cap
        # key -> failure times, oldest first; the dict is in last-failure order
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, key: str, now: float) -> float | None:
        times = self._recent(key, now)
        if times is None or len(times) < self.max_failures:
            return None
        return times[0] + self.window - now

    def failed(self, key: str, now: float) -> None:
        times = self._recent(key, now)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.max_failures)
        times.append(now)
        self._failures.move_to_end(key)
        while len(self._failures) > self.cap:
            self._failures.popitem(last=False)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)


class LoginLimiter:
    def __init__(self, max_failures: int = 5, window: float = 15 * 60, cap: int = 4096) -> None:
        self.max_failures = max_failures
        self.window = window
        self.by_address = _Table(max_failures, window, cap)
        self.by_name = _Table(max_failures, window, cap)

    def retry_after(self, address: str, name: str, now: float) -> int | None:
        waits = [
            w
            for w in (
                self.by_address.retry_after(address, now),
                self.by_name.retry_after(name.lower(), now) if name else None,
            )
            if w is not None
        ]
        if not waits:
            return None
        return max(1, math.ceil(max(waits)))

    def failed(self, address: str, name: str, now: float) -> None:
        self.by_address.failed(address, now)
        if name:
            self.by_name.failed(name.lower(), now)

    def succeeded(self, address: str, name: str) -> None:
        self.by_address.forget(address)
        self.by_name.forget(name.lower())
