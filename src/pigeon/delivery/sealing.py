"""The forwarding side of the SMTP agent: ARC-seal the copies an alias forwards.

Contract:
  * `SealingAgent(inner, sealer, resolver)` is a `DeliveryAgent` in front of
    the SMTP agent when `[arc] enabled` (delivery/wiring.py). A request that
    is not a forwarded copy (`DeliveryRequest.forwarded`, set by
    qmgr/dispatch.py) goes to `inner` as it is. A forwarded one is sealed
    first (forwarding/arc.py, in a worker thread: reading the message and
    signing take time the event loop must not lose): the new ARC set is put
    on top of the content (`PrefixedMessage`, nothing copied) and the
    request goes on with the longer content. Each attempt seals afresh
    (t= is the time of that attempt); the queued content never changes.
  * The prior chain's keys (cv=, RFC 8617 §5.1) are looked up through the
    process's resolver (`pigeon.dns.Resolver`), called from the thread on
    the event loop, each look-up bounded by `LOOKUP_TIMEOUT`; a failure is
    "no key", so that chain fails.
  * A message that cannot be sealed (`ArcError`) is sent unsealed, with a
    warning naming the queue ID and the reason: a seal adds trust, its
    absence refuses nothing. Content that cannot be read raises
    `StoreError`, which the manager treats as for any agent (4.0.0).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

from pigeon.delivery.api import DeliveryAgent, DeliveryRequest, RecipientResult
from pigeon.delivery.content import PrefixedMessage
from pigeon.dns.api import DnsError, Resolver
from pigeon.forwarding.arc import ArcError, ArcSealer

__all__ = ["LOOKUP_TIMEOUT", "SealingAgent"]

log = logging.getLogger("pigeon.delivery.sealing")

LOOKUP_TIMEOUT = 10.0  # seconds for one key look-up of a prior ARC set


class SealingAgent:
    """ARC-seals forwarded copies, then hands them to `inner` (module contract)."""

    def __init__(
        self,
        inner: DeliveryAgent,
        sealer: ArcSealer,
        resolver: Resolver,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inner = inner
        self.sealer = sealer
        self.resolver = resolver
        self._clock = clock

    async def deliver(self, request: DeliveryRequest) -> list[RecipientResult]:
        if request.forwarded:
            request = await self._sealed(request)
        return await self.inner.deliver(request)

    async def _sealed(self, request: DeliveryRequest) -> DeliveryRequest:
        loop = asyncio.get_running_loop()

        def lookup(name: str) -> str | None:
            future = asyncio.run_coroutine_threadsafe(self.resolver.txt(name), loop)
            try:
                records = future.result(LOOKUP_TIMEOUT)
            except (DnsError, TimeoutError):
                future.cancel()
                return None
            return next((r for r in records if r.lower().startswith("v=dkim1")), None) or (
                records[0] if records else None
            )

        def seal() -> bytes:
            with request.content.open() as stream:
                message = stream.read()
            return self.sealer.seal(message, now=int(self._clock()), verify_chain=lookup)

        try:
            fields = await asyncio.to_thread(seal)
        except ArcError as exc:
            log.warning("%s: forwarded unsealed: cannot make an ARC set: %s", request.queue_id, exc)
            return request
        content = PrefixedMessage(fields, request.content)
        return dataclasses.replace(request, content=content, size=request.size + len(fields))

    # The SMTP agent's other duties pass through.

    def statistics(self) -> dict[str, int]:
        stats: Callable[[], dict[str, int]] | None = getattr(self.inner, "statistics", None)
        return stats() if stats is not None else {}

    async def aclose(self) -> None:
        aclose = getattr(self.inner, "aclose", None)
        if aclose is not None:
            await aclose()
