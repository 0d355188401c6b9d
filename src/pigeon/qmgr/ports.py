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
  * `Clock` and `Rng` (qmgr/timing.py): time and jitter come in from outside,
    so tests use a fake clock and a fixed rng.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pigeon.qmgr.timing import Rng
from pigeon.queue.api import ContentStore, Intake, QueueQueries, QueueStateStore

__all__ = ["Clock", "MailLog", "ManagerStore", "Metrics", "Rng"]

Clock = Callable[[], float]


class ManagerStore(Intake, QueueStateStore, QueueQueries, ContentStore, Protocol):
    """The store as the queue manager uses it (module contract)."""


class MailLog(Protocol):
    def log(self, queue_id: str, fields: dict[str, Any], detail: str | None = None) -> None: ...


class Metrics(Protocol):
    def recipient_result(self, status: str, kind: str) -> None: ...

    def delivery_latency(self, seconds: float) -> None: ...
