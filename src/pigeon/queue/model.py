"""The queued message as the queue knows it: envelope, recipients, status.

Contract:
  * `Envelope` is what the SMTP side hands to `QueueStore.commit()` together
    with the spooled content; it is everything RFC 5321 and RFC 3461 say the
    MTA must remember about a message besides its content.
  * All values are JSON-friendly (`to_dict`/`from_dict`), so the store can keep
    them human-readable.
  * Recipient status changes only through the queue manager.
  * Delivery-status fields (`dsn_status`, `remote_mta`, `action`,
    `transport`, `last_attempt`) are what the last attempt reported; the
    manager keeps them so a DSN (RFC 3464) built days later can report them.
  * `Envelope.dsn_kind` marks messages the queue generated itself ("failure",
    "delay", "success", "relayed": a DSN to a sender; "double-bounce": a
    notice to postmaster). It is what stops bounce loops: a failed DSN goes
    to postmaster once, a failed double bounce is dropped.
  * Fields added later have defaults and `from_dict` tolerates their absence,
    so entries written by an older version still load. `from_dict` ignores
    keys it does not know: a field an older pigeon must not drop needs a
    new queue format (queue/schema.py, docs/upgrade.md), so that older
    pigeons refuse the queue instead of losing it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from pigeon.proto.params import MailParams, RcptParams

#: What json.loads() and `Envelope.from_dict()` raise for a damaged envelope.
DAMAGED_ENVELOPE = (ValueError, KeyError, TypeError)


class RecipientStatus(str, enum.Enum):
    PENDING = "pending"  # not yet attempted, or waiting for its transport
    DEFERRED = "deferred"  # attempted, failed temporarily, will retry
    DELIVERED = "delivered"  # handed off successfully (final)
    BOUNCED = "bounced"  # failed permanently (final)


@dataclass(slots=True)
class Recipient:
    address: str  # canonical str(Address) of the forward-path
    params: RcptParams = field(default_factory=RcptParams)
    status: RecipientStatus = RecipientStatus.PENDING
    #: Last delivery diagnostic ("dsn=4.4.1 ..." text), for logs and bounces.
    diagnostic: str = ""
    #: The envelope recipient this one was expanded from by an alias ("" when
    #: it was given by the client as is). Set by the queue manager when it
    #: expands aliases; such recipients are never alias-expanded again.
    original: str = ""
    #: RFC 3463 enhanced status of the last attempt ("" before any attempt).
    dsn_status: str = ""
    #: "mx.example.org[192.0.2.1]:25" when a peer answered, for Remote-MTA.
    remote_mta: str = ""
    #: RFC 3464 action of a final result ("delivered", "relayed", "failed").
    action: str = ""
    #: Transport of the last attempt ("local", "smtp", "lmtp", "discard").
    transport: str = ""
    #: Unix time of the last attempt (0.0: never attempted).
    last_attempt: float = 0.0
    #: A next hop chosen by a receive check, in [transports] syntax
    #: ("smtp:[host]:port", "lmtp:unix:/path", "local", "discard"), that
    #: overrides the routing of this recipient ("" = routed as usual).
    route: str = ""

    @property
    def final(self) -> bool:
        return self.status in (RecipientStatus.DELIVERED, RecipientStatus.BOUNCED)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "address": self.address,
            "params": self.params.to_dict(),
            "status": self.status.value,
            "diagnostic": self.diagnostic,
        }
        if self.original:
            d["original"] = self.original
        for key in ("dsn_status", "remote_mta", "action", "transport", "last_attempt", "route"):
            value = getattr(self, key)
            if value:
                d[key] = value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipient:
        return cls(
            d["address"],
            RcptParams.from_dict(d.get("params") or {}),
            RecipientStatus(d.get("status", "pending")),
            d.get("diagnostic", ""),
            d.get("original", ""),
            d.get("dsn_status", ""),
            d.get("remote_mta", ""),
            d.get("action", ""),
            d.get("transport", ""),
            d.get("last_attempt", 0.0),
            d.get("route", ""),
        )


@dataclass(slots=True)
class Envelope:
    queue_id: str
    sender: str  # "" for the null reverse-path <>
    recipients: list[Recipient]
    params: MailParams = field(default_factory=MailParams)
    received_at: float = 0.0  # Unix time the 250 was given
    size: int = 0  # octets of content as stored (incl. our Received:)
    eight_bit: bool = False  # content has octets > 127
    client_address: str = ""  # "ip" of the SMTP client ("" for local submission)
    client_helo: str = ""
    protocol: str = "ESMTP"  # SMTP / ESMTP / UTF8SMTP ... as in the Received: field
    attempts: int = 0  # delivery runs that ended deferred (drives the retry backoff)
    dsn_kind: str = ""  # "" = client mail; else which notification we generated (module doc)
    delay_warned: bool = False  # the one delay warning (RFC 3464 Action: delayed) has gone out
    #: Capture mode (docs/capture.md): the tenant the message is captured for;
    #: "" = ordinary mail. Kept in the preamble too, so a queue rebuilt from
    #: its files keeps captured mail captured (queue/recovery.py).
    capture: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "queue_id": self.queue_id,
            "sender": self.sender,
            "recipients": [r.to_dict() for r in self.recipients],
            "params": self.params.to_dict(),
            "received_at": self.received_at,
            "size": self.size,
            "eight_bit": self.eight_bit,
            "client_address": self.client_address,
            "client_helo": self.client_helo,
            "protocol": self.protocol,
            "attempts": self.attempts,
            "dsn_kind": self.dsn_kind,
            "delay_warned": self.delay_warned,
        }
        if self.capture:
            d["capture"] = self.capture
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Envelope:
        return cls(
            d["queue_id"],
            d["sender"],
            [Recipient.from_dict(r) for r in d["recipients"]],
            MailParams.from_dict(d.get("params") or {}),
            d.get("received_at", 0.0),
            d.get("size", 0),
            d.get("eight_bit", False),
            d.get("client_address", ""),
            d.get("client_helo", ""),
            d.get("protocol", "ESMTP"),
            d.get("attempts", 0),
            d.get("dsn_kind", ""),
            d.get("delay_warned", False),
            str(d.get("capture") or ""),
        )
