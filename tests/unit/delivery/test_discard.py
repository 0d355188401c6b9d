"""DiscardAgent: everyone delivered, nothing read."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pigeon.delivery.api import DeliveryRecipient, DeliveryRequest, Outcome
from pigeon.delivery.discard import DiscardAgent
from pigeon.proto.params import MailParams
from pigeon.vocab import Nexthop


def test_discard_delivers_everyone_without_reading():
    req = DeliveryRequest(
        "Q",
        "",
        MailParams(),
        (DeliveryRecipient("a@x"), DeliveryRecipient("b@x")),
        Path("/nonexistent/content"),
        0,
        False,
        False,
        Nexthop("discard", "x"),
    )
    res = asyncio.run(DiscardAgent().deliver(req))
    assert [(r.address, r.outcome, r.status, r.diagnostic) for r in res] == [
        ("a@x", Outcome.DELIVERED, "2.0.0", "discarded"),
        ("b@x", Outcome.DELIVERED, "2.0.0", "discarded"),
    ]
