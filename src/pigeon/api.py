"""pigeon.api: what plugins and embedding code may use, and nothing else.

Contract:
  * Everything a receive-time check, a delivery agent, a DNS resolver or a
    queue backend needs is importable from here under a stable name; the
    modules behind these names may move, these names may not without a
    deprecation. `tests/unit/api/test_exports.py` pins the list.
  * Nothing here does anything at import time: it only re-exports values,
    types and `typing.Protocol`s from the packages that own them
    (docs/architecture.md, "Layers"); it sits at the top of the import graph
    and nothing in pigeon imports it.
  * The extension points (docs/architecture.md, "Where upcoming work plugs in"):
      - plugins (`[[plugins]]`, docs/hooks.md): classes with stage methods
        (`mail`, `rcpt`, `end_of_data`, ...: the receive checks below) and
        delivery-event methods (`attempt`, `delivered`, `deferred`,
        `bounced`, `expired`, given a `DeliveryEvent`), built with their
        `Settings` and `PluginContext`; verdicts made with `reject`,
        `tempfail`, `accept`, `discard`, `quarantine`;
      - receive checks: classes with stage methods (`MailCheck.mail`,
        `RcptCheck.rcpt`, `MessageCheck.end_of_data`, ...) returning a
        `Verdict` (a refusal, header fields to add on top or remove,
        quarantine, discard, recipients changed, a transport) or None;
      - delivery agents: `DeliveryAgent.deliver(DeliveryRequest)` returning
        one `RecipientResult` per recipient;
      - DNS: the `Resolver` Protocol (MX, A, AAAA, TXT, PTR);
      - queue storage: the `QueueBackend` faces (`Intake`, `QueueStateStore`,
        `QueueQueries`, `ContentStore`), checked by
        `pigeon.testing.conformance.check_store`.
"""

from __future__ import annotations

from pigeon.delivery.api import (
    DeliveryAgent,
    DeliveryRecipient,
    DeliveryRequest,
    Outcome,
    RecipientResult,
)
from pigeon.dns.api import DnsError, MxRecord, NoData, NoSuchDomain, Resolver, TemporaryFailure
from pigeon.hooks.api import PluginContext, accept, discard, quarantine, reject, tempfail
from pigeon.hooks.events import DELIVERY_EVENTS, DeliveryEvent
from pigeon.policy.api import (
    ACCEPT,
    STAGES,
    AuthCheck,
    ConnectCheck,
    DataCheck,
    DisconnectCheck,
    EnvelopeRecipient,
    EtrnCheck,
    HeaderEdit,
    HeaderField,
    HeloCheck,
    MailCheck,
    Message,
    MessageCheck,
    NewSender,
    RcptCheck,
    SessionFacts,
    TlsCheck,
    Verdict,
    refuse,
)
from pigeon.proto.reply import Reply
from pigeon.queue.api import (
    ContentStore,
    Intake,
    MessageContent,
    QueueBackend,
    QueueQueries,
    QueueStateStore,
    Spool,
)
from pigeon.queue.model import Envelope, Recipient, RecipientStatus
from pigeon.vocab import Address, CorruptEntry, Nexthop, QueueState, Route, StoreError

__all__ = [
    # values shared by every layer
    "Address",
    "Nexthop",
    "QueueState",
    "Reply",
    "Route",
    # the queued message
    "Envelope",
    "Recipient",
    "RecipientStatus",
    # receive-time checks
    "ACCEPT",
    "STAGES",
    "AuthCheck",
    "ConnectCheck",
    "DataCheck",
    "DisconnectCheck",
    "EnvelopeRecipient",
    "EtrnCheck",
    "HeaderEdit",
    "HeaderField",
    "HeloCheck",
    "MailCheck",
    "Message",
    "MessageCheck",
    "NewSender",
    "RcptCheck",
    "SessionFacts",
    "TlsCheck",
    "Verdict",
    "refuse",
    # plugins ([[plugins]], docs/hooks.md)
    "DELIVERY_EVENTS",
    "DeliveryEvent",
    "PluginContext",
    "accept",
    "discard",
    "quarantine",
    "reject",
    "tempfail",
    # delivery agents
    "DeliveryAgent",
    "DeliveryRecipient",
    "DeliveryRequest",
    "Outcome",
    "RecipientResult",
    # DNS
    "DnsError",
    "MxRecord",
    "NoData",
    "NoSuchDomain",
    "Resolver",
    "TemporaryFailure",
    # queue storage
    "ContentStore",
    "CorruptEntry",
    "Intake",
    "MessageContent",
    "QueueBackend",
    "QueueQueries",
    "QueueStateStore",
    "Spool",
    "StoreError",
]
