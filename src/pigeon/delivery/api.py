"""The delivery-agent interface: what the queue manager hands out, what comes back.

Contract (CONTRIBUTING.md, rules 7 and 11):
  * The queue manager groups the not-yet-final recipients of one message by
    `Nexthop` and calls `agent.deliver(request)` once per group, with the
    agent of `nexthop.transport` ("smtp", "lmtp", "local", "discard"). An
    agent delivers to exactly that next hop (walking its MX candidates
    itself) and returns one `RecipientResult` per recipient of the request,
    in any order.
  * Agents never touch the queue store; they read the content through
    `request.content` (a `MessageContent`, pigeon/queue/api.py: a stream
    positioned at the message, never a path, so content may live anywhere)
    and report. The manager alone applies results.
  * An agent must not raise for delivery failures: those are results. An
    exception escaping `deliver()` is treated by the manager as a transient
    failure of every recipient in the request (4.0.0).
  * Results carry what RFC 3464 reports need: the enhanced status code, the
    action, the remote MTA and the remote reply (diagnostic).
  * One vocabulary for an outcome: `Outcome` IS the queue's
    `RecipientStatus` (pigeon/queue/model.py): an agent's result becomes the
    recipient's status as it is. Agents return DELIVERED, DEFERRED or
    BOUNCED, never PENDING (the manager treats that as "no result", 4.0.0).
  * Hand-over: an agent calls `handed_over()` at the instant its next hop
    may come to hold the message (SMTP and LMTP: the peer accepted DATA or
    BDAT; local: the Maildir write begins). The queue manager watches it
    around each call (`watching_handover`): an attempt abandoned after that
    instant, by a stop, may be delivered twice (app/lifecycle.py), and the
    log says so. Outside a watched call it does nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from pigeon.delivery.content import FileMessage
from pigeon.proto.params import MailParams, RcptParams
from pigeon.queue.api import MessageContent
from pigeon.queue.model import RecipientStatus
from pigeon.vocab.nexthop import Nexthop

__all__ = [
    "DeliveryAgent",
    "DeliveryRecipient",
    "DeliveryRequest",
    "MessageContent",
    "Outcome",
    "RecipientResult",
    "handed_over",
    "watching_handover",
]

#: The outcome of one recipient: the queue's recipient status (module contract).
Outcome = RecipientStatus


@dataclass(frozen=True, slots=True)
class DeliveryRecipient:
    address: str  # the recipient as the queue names it (after aliases)
    params: RcptParams = field(default_factory=RcptParams)
    #: Transport "local" only: the Maildir (`Route.mailbox`), the final
    #: address for Delivered-To:, and the address before alias expansion
    #: for X-Original-To: ("" when it is the same).
    mailbox: Path | None = None
    delivered_to: str = ""
    original_to: str = ""


@dataclass(frozen=True, slots=True)
class DeliveryRequest:
    queue_id: str
    sender: str  # "" = null reverse-path
    params: MailParams
    recipients: tuple[DeliveryRecipient, ...]
    #: The stored message (CRLF, our Received: on top). A path to a message
    #: file is taken too and wrapped in a `FileMessage` (delivery/content.py):
    #: tools and tests that hold a file; the queue manager hands out the
    #: store's content.
    content: MessageContent
    size: int  # octets of the message (the envelope's size: no need to open it)
    eight_bit: bool  # content holds octets > 127
    smtputf8: bool  # the message needs SMTPUTF8 (MAIL had SMTPUTF8)
    nexthop: Nexthop
    #: A copy an alias forwards to a remote address (qmgr/dispatch.py): its
    #: `sender` is already the SRS one when [srs] is on; the SMTP agent seals
    #: it with ARC when [arc] is on (delivery/sealing.py).
    forwarded: bool = False

    def __post_init__(self) -> None:
        content: object = self.content
        if isinstance(content, (str, os.PathLike)):
            object.__setattr__(self, "content", FileMessage(os.fspath(content)))


@dataclass(frozen=True, slots=True)
class RecipientResult:
    address: str
    outcome: RecipientStatus
    status: str  # enhanced status code, e.g. "2.0.0", "4.4.1", "5.1.1"
    diagnostic: str  # remote reply text ("550 5.1.1 no such user") or our reason
    remote_mta: str = ""  # "mx1.example.org[192.0.2.1]:25" when a peer was reached
    #: RFC 3464 action on success: "delivered" (final) or "relayed" (next hop
    #: lacks DSN, so no further DSN will come, RFC 3461 §6.2.2).
    action: Literal["delivered", "relayed", "failed", "delayed"] = "delivered"
    #: TLS used with the remote MTA, for the log: "verified TLSv1.3
    #: TLS_AES_256_GCM_SHA384" (certificate authenticated), "encrypted ..."
    #: (not checked), "none" (plaintext); "" = no peer reached.
    tls: str = ""
    #: The outbound TLS policy that applied (delivery/tlspolicy): "mta-sts:enforce",
    #: "mta-sts:testing", "dane", "none"; "" = none applies (a smarthost, LMTP).
    tls_policy: str = ""
    #: Seconds spent on (connection setup: DNS, connect, greeting, EHLO, TLS;
    #: transmission: MAIL to the final reply), for the log's delays= field.
    timings: tuple[float, float] = (0.0, 0.0)
    #: A deferral caused by our own storage failing (a full or failing disk
    #: under the Maildirs): the manager retries it after its short storage
    #: back-off, without counting an attempt (pigeon/qmgr/settle.py Rule 2).
    storage_fault: bool = False


class DeliveryAgent(Protocol):
    async def deliver(self, request: DeliveryRequest) -> list[RecipientResult]: ...


#: The manager's mark for the agent call in progress in this task (module contract).
_handover: ContextVar[Callable[[], None] | None] = ContextVar("pigeon_handover", default=None)


def handed_over() -> None:
    """The next hop may hold the message from now on (module contract, hand-over)."""
    mark = _handover.get()
    if mark is not None:
        mark()


@contextmanager
def watching_handover(mark: Callable[[], None]) -> Iterator[None]:
    """Call `mark` when the agent awaited inside this block calls `handed_over()`."""
    token = _handover.set(mark)
    try:
        yield
    finally:
        _handover.reset(token)
