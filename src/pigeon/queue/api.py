"""The queue behind interfaces: what each side of pigeon may ask of a queue store.

Contract:
  * A queue store has four faces, each a `typing.Protocol` here; callers
    depend on the face they use, never on a backend (the embedded SQLite +
    files store, `pigeon.queue.store.QueueStore`, today; PostgreSQL later):

      Intake        the SMTP side, sendmail, reports: spools and the commit
                    that must be durable before a 250 (CONTRIBUTING.md, rule 9)
      QueueState    the queue manager alone (rule 8): recovery, due entries,
                    claims, state changes, removal
      QueueQueries  operators and status: read-only listings and counts
      ContentStore  message content as streams (`MessageContent`), never a
                    file system path, so content may live anywhere

  * Errors are `pigeon.vocab.StoreError` (and `CorruptEntry`); no backend
    exception (sqlite3.Error, OSError) crosses these interfaces.
  * States are `pigeon.vocab.QueueState`.
  * Claims: an entry a manager is delivering is 'active' and owned by that
    manager; `QueueState.claim()` takes entries only from the states named,
    in one atomic step, so two owners never deliver one entry and an entry
    an operator held meanwhile is not started. `recover()` releases what
    this owner held when it stopped (one node: every 'active' entry).

Thread rules: Intake's methods are safe from any thread and never wait for
a disk sync on the caller's thread (commit_async returns a future); the
other faces block (they may wait for fsync) and are called from worker
threads (`asyncio.to_thread`), never from an event loop.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable, Sequence
from typing import BinaryIO, Protocol, runtime_checkable

from pigeon.queue.health import StorageHealth
from pigeon.queue.model import Envelope
from pigeon.queue.space import FreeSpace
from pigeon.vocab.states import QueueState

__all__ = [
    "ContentStore",
    "Entry",
    "Intake",
    "MessageContent",
    "QueueQueries",
    "QueueState",
    "QueueStateStore",
    "Spool",
]


@runtime_checkable
class Spool(Protocol):
    """A message being received: written piece by piece, then committed or discarded."""

    queue_id: str
    size: int
    envelope: Envelope | None  # as known when the content began (DATA/BDAT)

    def write(self, data: bytes) -> None:
        """Append content; StoreError (`.disk_full`) when it cannot be kept."""

    def head(self, limit: int = 65536) -> bytes:
        """The first `limit` octets written (the header section, for checks)."""

    def reader(self, start: int = 0) -> BinaryIO:
        """A stream over the octets written from `start` on (the body, for
        checks at the end of the data), without copying them; close it."""

    def prepend(self, field: bytes) -> None:
        """Put a header field (with its CRLF) on top of the message, below
        those prepended before it; written first at the commit."""

    def discard(self) -> None:
        """Forget the content; safe to call twice."""


class Intake(Protocol):
    """New mail into the queue (the SMTP side, local submission, reports)."""

    def new_spool(self, envelope: Envelope | None = None) -> Spool: ...

    def commit_async(
        self, spool: Spool, envelope: Envelope, *, hold: bool = False
    ) -> concurrent.futures.Future[None]:
        """Make content and envelope durable; the future resolves only then
        (StoreError on failure, nothing half-recorded). `hold`: the entry
        starts on hold (quarantined) instead of due for delivery."""

    def commit(self, spool: Spool, envelope: Envelope, *, hold: bool = False) -> None:
        """`commit_async(...).result()`: for callers without an event loop."""


class MessageContent(Protocol):
    """One queued message's content: exactly the octets to deliver."""

    @property
    def size(self) -> int: ...

    def open(self) -> BinaryIO:
        """A binary stream positioned at the message's first octet that ends
        at its last; the caller closes it. StoreError when unreadable."""


class ContentStore(Protocol):
    def content(self, queue_id: str) -> MessageContent: ...


class QueueStateStore(Protocol):
    """The queue manager's side: the single owner of queue state."""

    #: Faults of the queue's storage, one episode at a time (queue/health.py).
    health: StorageHealth

    def probe(self) -> None:
        """Write and sync a probe (a quarter MiB) where the queue keeps its
        data, then remove it: evidence that the storage takes writes again
        after a fault (StoreError when it does not)."""

    def recover(self) -> object:
        """Once at start-up: make the store consistent; release this owner's claims."""

    def due(self, now: float, limit: int = 100) -> list[str]:
        """Up to `limit` ids due at `now` ('incoming', and 'deferred' whose
        time has come), fair between new and deferred mail."""

    def next_retry(self) -> float | None:
        """The earliest next attempt of a deferred entry, or None."""

    def claim(
        self, queue_ids: Sequence[str], from_states: Iterable[QueueState] = (QueueState.INCOMING,)
    ) -> list[str]:
        """Mark 'active' those of `queue_ids` now in one of `from_states`, in
        one atomic step; the ids claimed."""

    def load(self, queue_id: str) -> Envelope:
        """The entry's envelope (CorruptEntry: quarantined, StoreError: unreadable now)."""

    def update(self, envelope: Envelope, state: QueueState, next_attempt: float) -> None:
        """Write the envelope (per-recipient status) and the entry's new state."""

    def move(
        self,
        queue_ids: Sequence[str],
        state: QueueState,
        next_attempt: float | None = None,
        *,
        from_states: Iterable[QueueState],
    ) -> list[str]:
        """Move the entries now in one of `from_states` to `state`, atomically; the ids moved."""

    def remove_many(self, queue_ids: Sequence[str]) -> None:
        """Delete the entries and their content (all or none)."""


class Entry(Protocol):
    """One queue entry as listings show it (`envelope` None: unreadable)."""

    @property
    def queue_id(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def next_attempt(self) -> float: ...

    @property
    def envelope(self) -> Envelope | None: ...


class QueueQueries(Protocol):
    """Read-only questions operators, status and metrics ask."""

    #: Free space against the reserve of the SMTP side (queue/space.py).
    space: FreeSpace

    def counts(self) -> dict[str, int]: ...

    def list(self, state: QueueState | None = None) -> Sequence[Entry]: ...

    def entry(self, queue_id: str) -> Entry | None: ...

    def states(self, queue_ids: Sequence[str]) -> dict[str, str]: ...
