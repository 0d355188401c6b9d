"""The durable queue: envelope model and store (group commit); storage only.

The queue manager, the only code that changes queue state, is pigeon.qmgr.
"""

from pigeon.queue.model import Envelope, Recipient, RecipientStatus
from pigeon.queue.store import (
    CorruptEntry,
    QueueEntry,
    QueueStore,
    RecoveryReport,
    SpoolFile,
    StoreError,
)

__all__ = [
    "CorruptEntry",
    "Envelope",
    "QueueEntry",
    "QueueStore",
    "Recipient",
    "RecipientStatus",
    "RecoveryReport",
    "SpoolFile",
    "StoreError",
]
