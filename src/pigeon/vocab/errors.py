"""Errors shared across layers: what the queue store raises.

Contract (CONTRIBUTING.md, rule 6: two faces): these carry a message for the
log and flags the callers act on; SMTP clients never see their text, they
get the generic reply the flag selects (451 4.3.0 or 452 4.3.1).

    StoreError          a queue operation failed; nothing half-recorded
      CorruptEntry      the entry was unreadable and is now 'corrupt'
"""

from __future__ import annotations

__all__ = ["CorruptEntry", "StoreError"]


class StoreError(Exception):
    """A queue operation failed; nothing was half-recorded.

    `disk_full` is True when the cause was ENOSPC/EDQUOT (or SQLITE_FULL): the
    SMTP side answers 452 4.3.1 instead of 451 4.3.0. `storage_fault` is True
    when the cause was the storage itself (disk full, I/O error, read-only
    file system: `pigeon.queue.health.is_storage_fault`), an expected
    condition that is retried, never a bug.
    """

    def __init__(
        self, message: str, *, disk_full: bool = False, storage_fault: bool = False
    ) -> None:
        super().__init__(message)
        self.disk_full = disk_full
        self.storage_fault = storage_fault or disk_full


class CorruptEntry(StoreError):
    """The entry was unreadable and has been moved to state 'corrupt'."""
