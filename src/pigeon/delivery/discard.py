"""DiscardAgent: report every recipient delivered and send nothing (Postfix discard(8)).

Contract:
  * `deliver()` returns DELIVERED, status 2.0.0, diagnostic "discarded",
    action "delivered" for every recipient of the request, in order.
  * It never opens the content file, never fails and does no I/O: the
    queue manager drops the message once the results are applied.
"""

from __future__ import annotations

from pigeon.delivery.api import DeliveryRequest, Outcome, RecipientResult


class DiscardAgent:
    """DeliveryAgent for transport "discard"."""

    async def deliver(self, request: DeliveryRequest) -> list[RecipientResult]:
        return [
            RecipientResult(r.address, Outcome.DELIVERED, "2.0.0", "discarded", "", "delivered")
            for r in request.recipients
        ]
