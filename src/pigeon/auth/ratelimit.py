"""Failed-login accounting per client address: slow down, then refuse (RFC 4954 §6 421 4.7.0).

Contract:
  * `FailureLimiter.check(ip, now)` says what to do with an AUTH attempt from
    `ip`: `Verdict(refuse=False, delay=0.0)` to go ahead, a positive `delay`
    (seconds) to answer it only after a pause, or `refuse=True` while the
    address is locked out (the driver answers 421 4.7.0 and closes).
  * `failure(ip, now)` records a failed attempt; `success(ip, now)` forgets
    the address's failures. Failures older than `window` seconds are forgotten.
  * Rule 1: after `slow_after` failures each further attempt waits
    `delay * (failures - slow_after + 1)` seconds, at most `max_delay`.
  * Rule 2: at `max_failures` failures the address is refused for `lockout`
    seconds; then it starts again from zero.
  * Rule 3: only the offending address is affected; the driver sleeps per
    connection (an asyncio sleep), so other clients are never slowed.
  * Bounded memory: at most `max_entries` addresses are tracked; the least
    recently failed one is dropped first.
  * Pure: time is an argument (STYLE 3.2); no I/O.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LimitSettings:
    slow_after: int = 3          # failures before answers are delayed
    delay: float = 1.0           # seconds added per failure past slow_after
    max_delay: float = 10.0      # the longest pause
    max_failures: int = 10       # failures before the address is refused
    window: float = 900.0        # seconds after which failures are forgotten
    lockout: float = 300.0       # seconds an address stays refused
    max_entries: int = 100_000


@dataclass(frozen=True, slots=True)
class Verdict:
    refuse: bool = False
    delay: float = 0.0


@dataclass(slots=True)
class _Entry:
    failures: int
    first: float
    locked_until: float = 0.0


class FailureLimiter:
    def __init__(self, settings: LimitSettings | None = None) -> None:
        self.settings = settings or LimitSettings()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def _entry(self, ip: str, now: float) -> _Entry | None:
        entry = self._entries.get(ip)
        if entry is None:
            return None
        if entry.locked_until:
            if now < entry.locked_until:
                return entry
            del self._entries[ip]          # Rule 2: lockout over, start again
            return None
        if now - entry.first > self.settings.window:
            del self._entries[ip]
            return None
        return entry

    def check(self, ip: str, now: float) -> Verdict:
        entry = self._entry(ip, now)
        if entry is None:
            return Verdict()
        if entry.locked_until:
            return Verdict(refuse=True)
        s = self.settings
        if entry.failures >= s.slow_after:
            return Verdict(delay=min(s.max_delay, s.delay * (entry.failures - s.slow_after + 1)))
        return Verdict()

    def failure(self, ip: str, now: float) -> None:
        s = self.settings
        entry = self._entry(ip, now)
        if entry is None:
            entry = self._entries[ip] = _Entry(0, now)
        entry.failures += 1
        if entry.failures >= s.max_failures and not entry.locked_until:
            entry.locked_until = now + s.lockout
        self._entries.move_to_end(ip)
        while len(self._entries) > s.max_entries:
            self._entries.popitem(last=False)

    def success(self, ip: str, now: float) -> None:
        entry = self._entry(ip, now)
        if entry is not None and not entry.locked_until:
            del self._entries[ip]

    def statistics(self) -> dict:
        return {"tracked": len(self._entries),
                "locked": sum(1 for e in self._entries.values() if e.locked_until)}
