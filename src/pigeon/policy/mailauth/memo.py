"""Results kept exactly as long as every DNS answer they were computed from.

Why: an SPF result is a function of the client address, MAIL FROM, the
HELO name and the DNS answers the evaluation asked for (RFC 7208 §4); a
DMARC policy, of the From domain and its records (RFC 7489 §6.6.3); the
keys of a message's signatures, of their names. A mailing list, a ticket
system or a newsletter sends message after message with the same ones;
once the answers are in the TTL cache, asking and evaluating them again
costs the checks a large part of their CPU time (docs/benchmarks.md,
issue 13). With every result of a message kept, its checks run without
a single look-up (policy/mailauth/findings.py).

Contract:
  * `AnswerMemo(resolver)`: with a `CachingResolver` (dns/cache.py) results are
    kept; with any other resolver `lookup` always misses and `keep` keeps
    nothing.
  * `view = memo.tracking()` is a `Resolver` for one evaluation: it asks
    `resolver` and notes until when each answer it was given stays in the
    cache. `memo.keep(key, value, view)` keeps `value` until the earliest of
    those times; not at all when an answer was not kept by the cache (a
    temporary failure) or when a TXT answer holds a `%{t}` macro (the
    current time, RFC 7208 §7.2: the result could change from one second to
    the next). `memo.lookup(key)` returns the value while it lasts, else None.
  * The key is the caller's: for SPF (client IP, MAIL FROM exactly as given,
    HELO name), so macros of the local part (%{l}, %{s}) are covered; the
    inbound checks' keys are in policy/mailauth/findings.py. A kept value is
    never None (None is "not kept").
  * At most `max_entries` results; past that the oldest go first.
"""

from __future__ import annotations

import math
from typing import Any

from pigeon.dns.api import DnsError, MxRecord, Resolver
from pigeon.dns.cache import CachingResolver

__all__ = ["AnswerMemo"]


class _Tracking:
    """A `Resolver` over the cache that remembers how long its answers last."""

    def __init__(self, cache: CachingResolver) -> None:
        self._cache = cache
        self.until = math.inf

    def _note(self, kind: str, name: str) -> None:
        expiry = self._cache.expiry(kind, name)
        self.until = min(self.until, -math.inf if expiry is None else expiry)

    async def _ask(self, kind: str, name: str) -> list[Any]:
        try:
            values: list[Any] = await getattr(self._cache, kind)(name)
        except DnsError:
            self._note(kind, name)
            raise
        self._note(kind, name)
        if kind == "txt" and any("%{t" in v.lower() for v in values):
            self.until = -math.inf
        return values

    async def mx(self, name: str) -> list[MxRecord]:
        return await self._ask("mx", name)

    async def a(self, name: str) -> list[str]:
        return await self._ask("a", name)

    async def aaaa(self, name: str) -> list[str]:
        return await self._ask("aaaa", name)

    async def txt(self, name: str) -> list[str]:
        return await self._ask("txt", name)

    async def ptr(self, address: str) -> list[str]:
        return await self._ask("ptr", address)


class AnswerMemo:
    """lookup(), tracking(), keep(): see the module contract."""

    def __init__(self, resolver: Resolver, *, max_entries: int = 10_000) -> None:
        self.resolver = resolver
        self._cache = resolver if isinstance(resolver, CachingResolver) else None
        self._max = max_entries
        self._kept: dict[Any, tuple[float, Any]] = {}

    def lookup(self, key: Any) -> Any:
        kept = self._kept.get(key)
        if kept is None or self._cache is None:
            return None
        if self._cache.now() < kept[0]:
            return kept[1]
        del self._kept[key]
        return None

    def tracking(self) -> Resolver:
        return _Tracking(self._cache) if self._cache is not None else self.resolver

    def keep(self, key: Any, value: Any, view: Resolver) -> None:
        if not isinstance(view, _Tracking) or view.until <= view._cache.now():
            return
        while len(self._kept) >= self._max:
            del self._kept[next(iter(self._kept))]
        self._kept[key] = (view.until, value)
