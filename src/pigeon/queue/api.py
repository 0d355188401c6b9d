"""The queue behind interfaces: what each side of pigeon may ask of a queue store.

Contract:
  * A queue store has five faces, each a `typing.Protocol` here; callers
    depend on the face they use, never on a backend (the embedded SQLite +
    files store, `pigeon.queue.store.QueueStore`, today; PostgreSQL or an
    object store later). `QueueBackend` is all of them plus open/close,
    what the composition root (pigeon.app) builds and the conformance
    suite (`pigeon.testing.conformance.check_store`) checks:

      Intake         the SMTP side, sendmail, reports: spools and the commit
                     that must be durable before a 250 (CONTRIBUTING.md, rule 9)
      QueueStateStore the queue manager alone (rule 8): recovery, due
                     entries, claims, state changes, removal
      QueueQueries   operators, status, metrics: read-only
      ContentStore   message content as streams (`MessageContent`), never a
                     file system path, so content may live anywhere
      StorageStatus  is the storage failing, is there room, counters; part of
                     Intake and of QueueStateStore: the SMTP side reports
                     faults and asks for room, the manager probes

  * Errors: every failure is a `pigeon.vocab.StoreError` (`.disk_full`,
    `.storage_fault` tell the caller which reply or retry it is), and an
    unreadable entry `CorruptEntry`; no backend exception (sqlite3.Error,
    OSError) crosses these interfaces. A misuse (an unknown state) is
    ValueError: a bug, not a condition.
  * States are `pigeon.vocab.QueueState`; an entry is in exactly one.
  * Claims: an entry being delivered is 'active' and claimed by one node
    (`QueueStateStore.node`: this process's node; a single-node queue has
    one). `claim()` (or `move()` to ACTIVE) takes an entry only from the
    states named, atomically: two claimants never both get it, and an entry
    an operator held or deleted meanwhile is not taken. `recover()`
    releases the claims of this node only: with one node, every 'active'
    entry.
  * Durability: what `commit` acknowledged, and every change a call has
    returned from, survives a crash of the process (a power cut may undo
    the manager's latest changes, never an acknowledged commit: the
    backend's contract says how).
  * A "crash" is any stop without `close()`; a new store object over the
    same data then `open()` + `recover()` finds: every acknowledged
    message with its content and envelope, none of the spools that were
    not committed, and this node's claims released.

Thread rules: Intake's methods and `Spool`'s are safe from any thread and
never wait for a disk sync on the caller's thread (`commit_async` returns a
future), so the SMTP side calls them on its event loop. The other faces
block (they may wait for a lock or an fsync): call them from worker threads
(`asyncio.to_thread`), never from an event loop. `StorageStatus.health` and
`.space` are safe anywhere.
"""

from __future__ import annotations

import builtins
import concurrent.futures
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, runtime_checkable

from pigeon.queue.health import StorageHealth
from pigeon.queue.model import Envelope
from pigeon.queue.space import FreeSpace
from pigeon.vocab.errors import CorruptEntry, StoreError
from pigeon.vocab.states import QueueState

__all__ = [
    "ContentStore",
    "CorruptEntry",
    "Intake",
    "MessageContent",
    "QueueBackend",
    "QueueEntry",
    "QueueQueries",
    "QueueState",
    "QueueStateStore",
    "RecoveryReport",
    "Spool",
    "StorageStatus",
    "StoreError",
]


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One entry as operators see it; `envelope` None when it cannot be read."""

    queue_id: str
    state: QueueState
    next_attempt: float  # Unix time ('incoming': its arrival; due when <= now)
    envelope: Envelope | None


@dataclass(slots=True)
class RecoveryReport:
    """What `recover()` found and did. A backend leaves the lists it has no
    use for empty (only a file store has tmp/ debris or orphan files)."""

    reactivated: list[str] = field(default_factory=list)  # this node's claims released
    tmp_removed: list[str] = field(default_factory=list)  # spool debris deleted
    orphans_removed: list[str] = field(default_factory=list)  # content, no entry: deleted
    missing_content: list[str] = field(default_factory=list)  # entry, no content: corrupt
    rebuilt: list[str] = field(default_factory=list)  # entry rebuilt from its content
    quarantined: list[str] = field(default_factory=list)  # content, no entry: corrupt entry
    ignored: list[str] = field(default_factory=list)  # things that are not ours, left alone
    queued: int = 0  # entries in the queue afterwards


@runtime_checkable
class Spool(Protocol):
    """A message being received: written piece by piece, then committed or discarded."""

    @property
    def queue_id(self) -> str:
        """Allocated when the spool was made; the committed entry keeps it."""

    @property
    def size(self) -> int:
        """Octets written so far."""

    envelope: Envelope | None
    """The envelope as known when the content began (DATA/BDAT), settable
    until the first write: a backend may keep it with the content so a
    message can be rebuilt from its content alone."""

    def write(self, data: bytes) -> None:
        """Append content. StoreError (`.disk_full` when out of space) when it
        cannot be kept; the spool is then failed: it can only be discarded."""

    def head(self, limit: int = 65536) -> bytes:
        """The first `limit` octets written (the header section, for checks)."""

    def reader(self, start: int = 0) -> BinaryIO:
        """A stream over the octets written from `start` on (the body, for
        checks at the end of the data), without copying them; close it
        before writing again."""

    def prepend(self, field: bytes) -> None:
        """Put a header field (with its CRLF) on top of the message, below
        those prepended before it; written first at the commit and counted
        in `size` (not in `head()` or `reader()`). StoreError once the
        spool is not open."""

    def memory_content(self) -> MessageContent | None:
        """The message as it would be committed (prepended fields first) while
        the whole of it is still in memory and the spool open, else None: what
        local delivery at the accept (qmgr/direct.py) writes into Maildirs."""

    def discard(self) -> None:
        """Forget the content. Idempotent, never raises; a no-op once committed."""


class StorageStatus(Protocol):
    """Is the queue's storage well? Safe from any thread."""

    @property
    def health(self) -> StorageHealth:
        """Storage faults seen by this store (queue/health.py), told by the
        store itself and by callers that saw a fault (the SMTP side)."""

    @property
    def space(self) -> FreeSpace:
        """Free room for new mail against the reserve (queue/space.py)."""

    def probe(self) -> None:
        """Write and sync a small probe where the store keeps content, and
        remove it: StoreError when that fails. Tells `health` either way."""

    def stats(self) -> dict[str, int]:
        """Counters: commits (messages), batches (durable group commits),
        failed (commits refused), max_batch."""


class Intake(StorageStatus, Protocol):
    """New mail into the queue (the SMTP side, local submission, reports)."""

    def new_spool(self, envelope: Envelope | None = None) -> Spool:
        """A new queue ID and an empty spool; costs no disk access. `envelope`
        (its queue_id is set to the spool's) is the draft of `Spool.envelope`.
        StoreError when the store is closed."""

    def commit_async(
        self, spool: Spool, envelope: Envelope, *, hold: bool = False
    ) -> concurrent.futures.Future[None]:
        """Queue `spool` with `envelope` (whose queue_id must be the spool's)
        for a durable commit. The future resolves to None once content and
        envelope are durable and the entry is 'incoming' (due at
        `envelope.received_at`, or now) or, with `hold`, 'hold' (a
        quarantined message, delivered once released), and only then; or to a StoreError,
        with nothing recorded and the spool's content gone. A spool that is
        discarded, failed, already committed or committing is refused the
        same way. Never raises itself."""

    def commit(self, spool: Spool, envelope: Envelope, *, hold: bool = False) -> None:
        """`commit_async(...).result()`: for callers without an event loop."""


class MessageContent(Protocol):
    """One queued message's content: exactly the octets to deliver (CRLF
    line ends, our Received: field first), nothing the store adds."""

    @property
    def size(self) -> int:
        """Length of the message in octets (StoreError when unreadable)."""

    def open(self) -> BinaryIO:
        """A new binary stream positioned on the message's first octet that
        ends at its last; the caller closes it. Each call is independent.
        StoreError when the content cannot be read (missing, damaged, I/O).

        Optimisation: a file-backed stream has a working `fileno()`, so a
        reader may use fd-level calls (os.sendfile, copy_file_range) from
        the stream's current offset; any other stream raises
        io.UnsupportedOperation there, and the reader falls back to read()."""


class ContentStore(Protocol):
    def content(self, queue_id: str) -> MessageContent:
        """The content of a committed entry. Cheap (no I/O until used); an
        unknown or removed entry fails when its content is opened."""


class QueueStateStore(StorageStatus, Protocol):
    """The queue manager's side: the single owner of queue state."""

    @property
    def node(self) -> str:
        """The node whose claims this store object makes and recovers."""

    def recover(self) -> RecoveryReport:
        """Once at start-up, before delivering: make the store consistent
        after a crash and release this node's claims ('active' -> 'incoming',
        due at once). Idempotent. Safe while new mail is being received."""

    def due(self, now: float, limit: int = 100) -> builtins.list[str]:
        """Up to `limit` ids due at `now`: 'incoming' and 'deferred' entries
        whose next attempt is <= now, each state oldest first. Fair: up to
        half the slots go to each state, what one cannot use to the other,
        the two interleaved, so new mail never waits behind a backlog."""

    def next_retry(self) -> float | None:
        """The earliest next attempt of a 'deferred' entry; None when none."""

    def claim(
        self,
        queue_ids: Sequence[str],
        from_states: Iterable[QueueState] = (QueueState.INCOMING,),
    ) -> builtins.list[str]:
        """Make 'active', claimed by this node, those of `queue_ids` now in one
        of `from_states`, atomically; the ids claimed, in the order given."""

    def load(self, queue_id: str) -> Envelope:
        """The entry's envelope. CorruptEntry when the envelope or the content
        is unreadable (the entry is now 'corrupt', its content kept);
        StoreError when there is no such entry or it cannot be read now."""

    def update(self, envelope: Envelope, state: QueueState, next_attempt: float) -> None:
        """Write the envelope (recipient statuses, attempts), the entry's state
        and next attempt, atomically and durably. No entry: nothing happens."""

    def move(
        self,
        queue_ids: Sequence[str],
        state: QueueState,
        next_attempt: float | None = None,
        *,
        from_states: Iterable[QueueState],
    ) -> builtins.list[str]:
        """Move to `state` (and reschedule to `next_attempt` when given) those
        of `queue_ids` now in one of `from_states`, atomically; the ids
        moved, in the order given. Moving to ACTIVE is a claim."""

    def remove_many(self, queue_ids: Sequence[str]) -> None:
        """Delete the entries and their content: all of them or (StoreError)
        none. Unknown ids are ignored."""


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

    def counts(self) -> dict[str, int]:
        """Entries per state; every state present, zeros included."""

    def list(self, state: QueueState | None = None) -> builtins.list[QueueEntry]:
        """Entries (of one state, when given) in queue ID order, i.e. arrival."""

    def entry(self, queue_id: str) -> QueueEntry | None:
        """One entry as `list()` shows it; None when there is none."""

    def states(self, queue_ids: Sequence[str]) -> dict[str, QueueState]:
        """queue_id -> state for those of `queue_ids` that exist."""


class QueueBackend(Intake, ContentStore, QueueStateStore, QueueQueries, Protocol):
    """A whole queue store: every face, plus its lifetime."""

    def open(self) -> None:
        """Connect, create what is missing, start background work. StoreError
        (the backend's subclasses say why) when the store cannot be used."""

    def close(self) -> None:
        """Finish the commits already queued, stop, release everything. Idempotent."""
