"""The durable queue: envelope model, store (group commit) and queue manager."""

from pigeon.queue.manager import QueueManager
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
    "QueueManager",
    "QueueStore",
    "Recipient",
    "RecipientStatus",
    "RecoveryReport",
    "SpoolFile",
    "StoreError",
]
