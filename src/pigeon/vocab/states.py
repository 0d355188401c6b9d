"""The states of a queue entry, as one type.

Contract: `QueueState` is a `StrEnum`, so a state compares equal to its
name ("deferred") as stored in the queue database and sent over the control
socket; code names states through this type rather than bare strings.

    incoming  new, due now
    active    a delivery attempt owns it
    deferred  waiting for its next attempt
    hold      stopped by an operator until released
    corrupt   unreadable; kept for inspection, never deleted by pigeon
    capture   accepted in capture mode (docs/capture.md): kept, never delivered
              nor bounced, until released ('incoming') or deleted
"""

from __future__ import annotations

import enum

__all__ = ["QueueState", "STATES"]


class QueueState(enum.StrEnum):
    INCOMING = "incoming"
    ACTIVE = "active"
    DEFERRED = "deferred"
    HOLD = "hold"
    CORRUPT = "corrupt"
    CAPTURE = "capture"


#: Every state, in the order listings show them.
STATES: tuple[QueueState, ...] = tuple(QueueState)
