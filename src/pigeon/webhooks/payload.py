"""An event as the JSON document a webhook receiver gets (docs/webhooks.md, "Events").

Contract:
  * `received(...)` and `delivery(event)` return a `WebhookEvent`: its
    kind, a unique id ("evt_" and 32 hex digits from the system's random
    source), and `body`, the exact octets POSTed and signed: a JSON object
    (RFC 8259, UTF-8, keys sorted, no insignificant white space) with
    `id`, `type`, `created` (Unix seconds), `time` (RFC 3339, UTC),
    `queue_id`, `sender` ("" for the null reverse-path), `recipients`, and
    per kind: "received": `size`, `client_address`, `helo`, `protocol`;
    the delivery kinds: `relay`, `status` (RFC 3463), `diagnostic`.
  * Pure but for the id and the clock passed in; never reads the queue.
"""

from __future__ import annotations

import datetime
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pigeon.hooks.events import DeliveryEvent

__all__ = ["WebhookEvent", "delivery", "new_event_id", "received"]


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    kind: str  # "received", "delivered", "deferred", "bounced", "expired"
    id: str
    created: float  # Unix time of the event
    body: bytes  # the JSON document, exactly as POSTed and signed


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(16)


def _event(kind: str, created: float, fields: dict[str, Any]) -> WebhookEvent:
    event_id = new_event_id()
    stamp = datetime.datetime.fromtimestamp(created, datetime.UTC)
    doc = {
        "id": event_id,
        "type": kind,
        "created": round(created, 3),
        "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        **fields,
    }
    body = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return WebhookEvent(kind, event_id, created, body.encode("utf-8"))


def received(
    queue_id: str,
    sender: str,
    recipients: Sequence[str],
    *,
    size: int,
    client_address: str,
    helo: str,
    protocol: str,
    now: float,
) -> WebhookEvent:
    """A message accepted and durable (after the queue's commit)."""
    return _event(
        "received",
        now,
        {
            "queue_id": queue_id,
            "sender": sender,
            "recipients": list(recipients),
            "size": size,
            "client_address": client_address,
            "helo": helo,
            "protocol": protocol,
        },
    )


def delivery(event: DeliveryEvent) -> WebhookEvent:
    """A durable delivery outcome (pigeon/hooks/events.py), "attempt" excluded by the caller."""
    return _event(
        event.kind,
        event.time,
        {
            "queue_id": event.queue_id,
            "sender": event.sender,
            "recipients": list(event.recipients),
            "relay": event.relay,
            "status": event.status,
            "diagnostic": event.diagnostic,
        },
    )
