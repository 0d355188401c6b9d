"""The delivery-agent interface: what the queue manager hands out, what comes back.

Contract (CONTRIBUTING.md, rules 7 and 11):
  * The queue manager groups the not-yet-final recipients of one message by
    `Nexthop` and calls `agent.deliver(request)` once per group. An agent
    delivers to exactly that next hop (walking its MX candidates itself) and
    returns one `RecipientResult` per recipient of the request, in any order.
  * Agents never touch the queue store; they read the content file named in
    the request and report. The manager alone applies results.
  * An agent must not raise for delivery failures: those are results. An
    exception escaping `deliver()` is treated by the manager as a transient
    failure of every recipient in the request (4.0.0).
  * Results carry what RFC 3464 reports need: the enhanced status code, the
    action, the remote MTA and the remote reply (diagnostic).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from pigeon.proto.params import MailParams, RcptParams
from pigeon.vocab.nexthop import Nexthop


class Outcome(str, enum.Enum):
    DELIVERED = "delivered"  # final success (local mailbox, or remote 250)
    DEFERRED = "deferred"  # transient failure: retry later
    BOUNCED = "bounced"  # permanent failure: report to the sender


@dataclass(frozen=True, slots=True)
class DeliveryRecipient:
    address: str  # the final address to deliver to (after aliases)
    params: RcptParams = field(default_factory=RcptParams)


@dataclass(frozen=True, slots=True)
class DeliveryRequest:
    queue_id: str
    sender: str  # "" = null reverse-path
    params: MailParams
    recipients: tuple[DeliveryRecipient, ...]
    content: Path  # the stored message (CRLF, our Received: on top)
    size: int
    eight_bit: bool  # content holds octets > 127
    smtputf8: bool  # the message needs SMTPUTF8 (MAIL had SMTPUTF8)
    nexthop: Nexthop


@dataclass(frozen=True, slots=True)
class RecipientResult:
    address: str
    outcome: Outcome
    status: str  # enhanced status code, e.g. "2.0.0", "4.4.1", "5.1.1"
    diagnostic: str  # remote reply text ("550 5.1.1 no such user") or our reason
    remote_mta: str = ""  # "mx1.example.org[192.0.2.1]:25" when a peer was reached
    #: RFC 3464 action on success: "delivered" (final) or "relayed" (next hop
    #: lacks DSN, so no further DSN will come, RFC 3461 §6.2.2).
    action: Literal["delivered", "relayed", "failed", "delayed"] = "delivered"
    #: TLS used with the remote MTA, for the log: "TLSv1.3 TLS_AES_256_GCM_SHA384
    #: (unverified)"; "" = plaintext or no peer reached.
    tls: str = ""
    #: Seconds spent on (connection setup: DNS, connect, greeting, EHLO, TLS;
    #: transmission: MAIL to the final reply), for the log's delays= field.
    timings: tuple[float, float] = (0.0, 0.0)


class DeliveryAgent(Protocol):
    async def deliver(self, request: DeliveryRequest) -> list[RecipientResult]: ...
