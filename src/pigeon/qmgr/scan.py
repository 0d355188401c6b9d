"""The manager's scan of the database: due entries claimed and loaded, in a worker thread.

Contract:
  * `scan_db(store, now, free, busy)` takes up to `free` due entries (fair
    between new and deferred mail: the store's due(), queue/state.py) and
    returns (the entries taken with their envelopes, how many were
    corrupt, whether the due work filled every free slot, the next retry
    time). Called from a worker thread by the runner (qmgr/runner.py),
    which starts a delivery for each entry taken.
  * Two paths, one result:
      - the embedded store (one node): `due()`, then `claim()` of the ids
        not in `busy`, one conditional transaction;
      - a queue several nodes share (`SharedClaims`, qmgr/ports.py):
        `claim_due()` chooses and claims in ONE transaction with rows
        locked FOR UPDATE SKIP LOCKED, so nodes scanning at once get
        disjoint work instead of racing for the same ids (issue 17). An id
        in `busy` (an outcome of ours still unwritten, settle.py) is left
        claimed but not started: our pending write settles its row.
  * A failing claim raises `ScanFailed` with the ids that may have moved
    (for the requeue); with `claim_due()` that is none known: what it may
    have claimed is ours, 'active', and comes back through the sweep or
    when its lease expires. A corrupt entry is quarantined by the store
    and counted; an entry that cannot be read is taken with no envelope
    (the delivery loads it again and requeues it if that fails too).
"""

from __future__ import annotations

from pigeon.qmgr.ports import ManagerStore, SharedClaims
from pigeon.qmgr.settle import STORE_ERRORS
from pigeon.queue.model import Envelope
from pigeon.vocab import CorruptEntry, QueueState

__all__ = ["ScanFailed", "scan_db"]

_SCANNED = (QueueState.INCOMING, QueueState.DEFERRED)

Taken = list[tuple[str, Envelope | None]]


class ScanFailed(Exception):
    """The scan's claim failed; `ids` may or may not have moved."""

    def __init__(self, ids: list[str], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.ids, self.cause = ids, cause


def scan_db(
    store: ManagerStore,
    shared: SharedClaims | None,
    now: float,
    free: int,
    busy: frozenset[str],
) -> tuple[Taken, int, bool, float | None]:
    """See the module contract."""
    if shared is not None:
        try:
            pairs = shared.claim_due(now, free)
        except STORE_ERRORS as exc:
            raise ScanFailed([], exc) from exc
        claimed = [qid for qid, _ in pairs if qid not in busy]
        full = len(pairs) >= free and bool(claimed)
    else:
        ids = store.due(now, free)
        # due() never returns 'active' entries, and ours are claimed before
        # they start; an entry kept in memory after a failed write
        # (settle.py) may still be 'deferred' in the database.
        new = [q for q in ids if q not in busy]
        claimed = []
        if new:
            try:
                claimed = store.claim(new, from_states=_SCANNED)
            except STORE_ERRORS as exc:
                raise ScanFailed(new, exc) from exc
        full = len(ids) >= free and bool(new)
    taken: Taken = []
    corrupt = 0
    for qid in claimed:
        try:
            taken.append((qid, store.load(qid)))
        except CorruptEntry:
            corrupt += 1  # quarantined and logged by the store
        except STORE_ERRORS:
            taken.append((qid, None))
    return taken, corrupt, full, store.next_retry()
