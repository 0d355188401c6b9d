"""What the queue manager is given: the narrow interfaces it depends on.

Contract (CONTRIBUTING.md, rules 11 and 14: narrow seams, injected):
  * `ManagerStore`: the four faces of a queue store (pigeon/queue/api.py)
    that the manager uses together: intake (its reports are new mail),
    queue state (it is the single owner), queries (operator selections,
    status) and content. Any backend passing the store conformance suite
    fits; the manager never sees a path or a backend exception.
  * `MailLog`: one Postfix-style line per message event (pigeon/obs/maillog.py).
  * `Metrics`: told each recipient result once it is durable, and the queue
    delay of each delivery (pigeon/obs/metrics.py); optional.
  * `SharedClaims`, `ClusterSlots`: what a queue several nodes share
    (issue 17; pigeon/store/pg/) offers beyond the four faces: due work
    claimed in one step, leases kept, destination slots across the
    cluster. The manager uses them when the store has them (`shared_claims`,
    `cluster_slots`) and otherwise keeps the embedded store's path.
  * `Clock` and `Rng` (qmgr/timing.py): time and jitter come in from outside,
    so tests use a fake clock and a fixed rng.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pigeon.qmgr.timing import Rng
from pigeon.queue.api import ContentStore, Intake, QueueQueries, QueueStateStore
from pigeon.vocab import QueueState

__all__ = [
    "Clock",
    "ClusterSlots",
    "MailLog",
    "ManagerStore",
    "Metrics",
    "Rng",
    "SharedClaims",
    "cluster_slots",
    "shared_claims",
]

Clock = Callable[[], float]


class ManagerStore(Intake, QueueStateStore, QueueQueries, ContentStore, Protocol):
    """The store as the queue manager uses it (module contract)."""


class MailLog(Protocol):
    def log(self, queue_id: str, fields: dict[str, Any], detail: str | None = None) -> None: ...


class Metrics(Protocol):
    def recipient_result(self, status: str, kind: str) -> None: ...

    def delivery_latency(self, seconds: float) -> None: ...


class SharedClaims(Protocol):
    """Claims with leases (pigeon/store/pg/manager.py)."""

    lease: float  # seconds a claim lasts unless renewed

    def claim_due(self, now: float, limit: int = 100) -> list[tuple[str, QueueState]]: ...

    def renew_leases(self, queue_ids: Sequence[str]) -> list[str]: ...

    def release_expired(self, now: float) -> list[str]: ...

    def own_active(self) -> list[str]: ...


class ClusterSlots(Protocol):
    """Per-destination slots every node counts against (pigeon/store/pg/slots.py);
    `try_acquire` never waits and returns None when all are taken."""

    def try_acquire(self, destination: str, limit: int) -> Any: ...

    def release(self, slot: Any) -> None: ...

    def is_held(self, slot: Any) -> bool:
        """Whether `slot` is still held (its session alive); no database call."""
        ...


def shared_claims(store: object) -> SharedClaims | None:
    """`store` as SharedClaims when it is a queue several nodes share, else None."""
    names = ("claim_due", "renew_leases", "release_expired", "own_active", "lease")
    return store if all(hasattr(store, n) for n in names) else None  # type: ignore[return-value]


def cluster_slots(store: object) -> ClusterSlots | None:
    """The store's cluster-wide destination slots, or None (the embedded store)."""
    make = getattr(store, "destination_slots", None)
    return None if make is None else make()
