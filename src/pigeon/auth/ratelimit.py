"""Failed-login accounting per client address: slow down, then refuse (RFC 4954 §6 421 4.7.0).

Contract:
  * Addresses are counted per client: an IPv4 address, or the /64 of an IPv6
    address (one host usually holds a whole /64, so counting single IPv6
    addresses would give it 2^64 fresh starts). IPv4-mapped IPv6 addresses
    count as their IPv4 address.
  * Rule 0: the attempt is counted *before* its password is checked.
    `attempt(ip, now)` says what to do with an AUTH attempt from `ip` and,
    unless it is refused, records it as in flight: `Verdict(refuse=False,
    delay=0.0)` to go ahead, a positive `delay` (seconds) to answer it only
    after a pause, or `refuse=True` (the driver answers 421 4.7.0 and
    closes). Attempts in flight count like failures, so parallel logins
    cannot all be tried: at most `max_failures` are in flight or failed.
  * Every attempt that was not refused ends with exactly one of
    `failure(ip, now)` (wrong credentials), `success(ip, now)` (forgets the
    address's failures) or `release(ip, now)` (no verdict on the password:
    the account store was unavailable, or the client went away).
    `check(ip, now)` looks without counting; `locked(ip, now)` says whether
    the address is locked out (Rule 2).
  * Rule 1: after `slow_after` failures (or attempts in flight) each further
    attempt waits `delay * (count - slow_after + 1)` seconds, at most
    `max_delay`.
  * Rule 2: at `max_failures` failures the address is refused for `lockout`
    seconds; then it starts again from zero. Failures older than `window`
    seconds are forgotten.
  * Rule 3: only the offending address (/64) is affected; the driver sleeps
    per connection (an asyncio sleep), so other clients are never slowed.
  * Bounded memory: at most `max_entries` addresses are tracked; the least
    recently used one is dropped first.
  * Pure: time is an argument; no I/O.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

from pigeon.config.schema import AuthConfig


@dataclass(frozen=True, slots=True)
class LimitSettings:
    slow_after: int = 3  # failures before answers are delayed
    delay: float = 1.0  # seconds added per failure past slow_after
    max_delay: float = 10.0  # the longest pause
    max_failures: int = 10  # failures before the address is refused
    window: float = 900.0  # seconds after which failures are forgotten
    lockout: float = 300.0  # seconds an address stays refused
    max_entries: int = 100_000

    @classmethod
    def of(cls, auth: AuthConfig) -> LimitSettings:
        """The settings of the `[auth]` table."""
        return cls(
            slow_after=auth.slow_after,
            delay=auth.failure_delay,
            max_failures=auth.max_failures,
            window=auth.failure_window,
            lockout=auth.lockout,
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    refuse: bool = False
    delay: float = 0.0


@dataclass(slots=True)
class _Entry:
    failures: int
    first: float
    locked_until: float = 0.0
    in_flight: int = 0


def client_key(ip: str) -> str:
    """The unit that is counted: the IPv4 address, or the IPv6 /64 (see the contract)."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class FailureLimiter:
    def __init__(self, settings: LimitSettings | None = None) -> None:
        self.settings = settings or LimitSettings()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def _entry(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.locked_until:
            if now < entry.locked_until:
                return entry
            del self._entries[key]  # Rule 2: lockout over, start again
            return None
        if now - entry.first > self.settings.window:
            if not entry.in_flight:
                del self._entries[key]
                return None
            entry.failures, entry.first = 0, now
        return entry

    def _touch(self, key: str, entry: _Entry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.settings.max_entries:
            self._entries.popitem(last=False)

    def _verdict(self, entry: _Entry | None) -> Verdict:
        if entry is None:
            return Verdict()
        s = self.settings
        count = entry.failures + entry.in_flight
        if entry.locked_until or count >= s.max_failures:
            return Verdict(refuse=True)
        if count >= s.slow_after:
            return Verdict(delay=min(s.max_delay, s.delay * (count - s.slow_after + 1)))
        return Verdict()

    def check(self, ip: str, now: float) -> Verdict:
        """The verdict an attempt would get now, without counting one."""
        return self._verdict(self._entry(client_key(ip), now))

    def locked(self, ip: str, now: float) -> bool:
        entry = self._entry(client_key(ip), now)
        return entry is not None and bool(entry.locked_until)

    def attempt(self, ip: str, now: float) -> Verdict:
        """Rule 0: decide, and count the attempt before its password is checked."""
        key = client_key(ip)
        entry = self._entry(key, now)
        verdict = self._verdict(entry)
        if verdict.refuse:
            return verdict
        if entry is None:
            entry = _Entry(0, now)
        entry.in_flight += 1
        self._touch(key, entry)
        return verdict

    def _finish(self, key: str, now: float) -> _Entry | None:
        entry = self._entry(key, now)
        if entry is not None and entry.in_flight:
            entry.in_flight -= 1
        return entry

    def failure(self, ip: str, now: float) -> None:
        key = client_key(ip)
        entry = self._finish(key, now)
        if entry is None:
            entry = _Entry(0, now)
        entry.failures += 1
        if entry.failures >= self.settings.max_failures and not entry.locked_until:
            entry.locked_until = now + self.settings.lockout
        self._touch(key, entry)

    def success(self, ip: str, now: float) -> None:
        key = client_key(ip)
        entry = self._finish(key, now)
        if entry is not None and not entry.locked_until:
            entry.failures = 0
            if not entry.in_flight:
                del self._entries[key]

    def release(self, ip: str, now: float) -> None:
        key = client_key(ip)
        entry = self._finish(key, now)
        if (
            entry is not None
            and not entry.failures
            and not entry.in_flight
            and not entry.locked_until
        ):
            del self._entries[key]

    def statistics(self) -> dict[str, int]:
        return {
            "tracked": len(self._entries),
            "locked": sum(1 for e in self._entries.values() if e.locked_until),
        }
