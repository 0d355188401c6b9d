"""`CachingResolver`: a `Resolver` that keeps answers for their TTL.

    cached = CachingResolver(StubResolver.from_config(config.delivery))
    records = await cached.txt("_dmarc.example.org")    # asked once per TTL

Contract (the interface's rules are in pigeon/dns/api.py; this keeps them):
  * Wraps any `Resolver`. When the inner resolver is a `TtlSource` (has
    `answer(kind, name)`, as `StubResolver` has), a positive answer is kept
    for its TTL, at most `max_ttl` seconds; otherwise for `default_ttl`.
  * A negative answer (`NoSuchDomain`, `NoData`) is kept `negative_ttl`
    seconds (RFC 2308 §5 allows caching them; a fixed short time stands in
    for the SOA minimum, which the interface does not carry). A
    `TemporaryFailure` is never kept: the next look-up asks again.
  * Look-ups of one (kind, name) that run at the same time share one query.
  * At most `max_entries` answers are kept; past that the oldest go first.
  * Time is `clock` (monotonic seconds), an argument so tests need not wait.
  * Returned lists are copies: a caller may change what it was given.
  * `expiry(kind, name)` says until when a kept answer stays (None: none is
    kept), so results computed from answers can be kept exactly as long
    (policy/mailauth/memo.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pigeon.dns.api import DnsError, MxRecord, NoData, NoSuchDomain, Resolver

__all__ = ["CachingResolver"]


class CachingResolver:
    """See the module contract."""

    def __init__(
        self,
        inner: Resolver,
        *,
        clock: Callable[[], float] = time.monotonic,
        default_ttl: float = 60.0,
        negative_ttl: float = 60.0,
        max_ttl: float = 86400.0,
        max_entries: int = 10_000,
    ) -> None:
        self.inner = inner
        self._clock = clock
        self._default_ttl = default_ttl
        self._negative_ttl = negative_ttl
        self._max_ttl = max_ttl
        self._max_entries = max_entries
        # (kind, name) -> (expiry, values or the negative DnsError)
        self._kept: dict[tuple[str, str], tuple[float, list[Any] | DnsError]] = {}
        self._pending: dict[tuple[str, str], asyncio.Future[list[Any]]] = {}

    async def mx(self, name: str) -> list[MxRecord]:
        return await self._get("mx", name)

    async def a(self, name: str) -> list[str]:
        return await self._get("a", name)

    async def aaaa(self, name: str) -> list[str]:
        return await self._get("aaaa", name)

    async def txt(self, name: str) -> list[str]:
        return await self._get("txt", name)

    async def ptr(self, address: str) -> list[str]:
        return await self._get("ptr", address)

    def __len__(self) -> int:
        return len(self._kept)

    def expiry(self, kind: str, name: str) -> float | None:
        """When the kept answer of (`kind`, `name`) expires (`clock` time), or
        None when none is kept (a temporary failure, never asked, or gone)."""
        kept = self._kept.get((kind, name.lower().rstrip(".") if kind != "ptr" else name))
        return None if kept is None else kept[0]

    def now(self) -> float:
        return self._clock()

    async def _get(self, kind: str, name: str) -> list[Any]:
        key = (kind, name.lower().rstrip(".") if kind != "ptr" else name)
        kept = self._kept.get(key)
        if kept is not None:
            expiry, value = kept
            if self._clock() < expiry:
                if isinstance(value, DnsError):
                    raise value
                return list(value)
            del self._kept[key]
        pending = self._pending.get(key)
        if pending is not None:
            return list(await asyncio.shield(pending))
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            values = await self._ask(kind, name, key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            future.set_result(values)
            return list(values)
        finally:
            del self._pending[key]

    async def _ask(self, kind: str, name: str, key: tuple[str, str]) -> list[Any]:
        answer = getattr(self.inner, "answer", None)
        try:
            if answer is not None:
                values, ttl = await answer(kind, name)
                ttl = min(float(ttl), self._max_ttl)
            else:
                values, ttl = await getattr(self.inner, kind)(name), self._default_ttl
        except (NoSuchDomain, NoData) as exc:
            self._keep(key, self._negative_ttl, exc)
            raise
        self._keep(key, ttl, values)
        return list(values)

    def _keep(self, key: tuple[str, str], ttl: float, value: list[Any] | DnsError) -> None:
        if ttl <= 0:
            return
        while len(self._kept) >= self._max_entries:
            del self._kept[next(iter(self._kept))]
        self._kept[key] = (self._clock() + ttl, value)
