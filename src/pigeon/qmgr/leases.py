"""Keeping a shared queue's claims: lease renewal and the takeover of dead nodes' work.

Contract (issue 17: each delivery attempt runs on one node; a node that
dies loses its claims when their leases expire, and another node takes
the work):
  * `keep_leases(claims, owned, taken_back)` runs beside the manager's
    loop (qmgr/runner.py starts it for a store with `SharedClaims`,
    qmgr/ports.py, and cancels it once the last delivery has ended). Every
    `claims.lease / 3` seconds it
      1. renews the leases of every entry this node owns (`owned()`: the
         deliveries running and the outcomes not yet written) in ONE
         UPDATE (`renew_leases`), so a delivery longer than the lease keeps
         its claim;
      2. releases every expired lease of any node (`release_expired`,
         recover()'s second half), and when that made entries due calls
         `taken_back()` (the manager's nudge: a scan claims them, here or
         on whichever node scans first).
    A claim survives two missed rounds (the database unreachable for up to
    two thirds of the lease); a third lets it expire.
  * A claim found no longer ours (its lease expired while the database was
    unreachable or this node stalled, and another node took the entry
    over) is logged once as a warning; the delivery here goes on and
    records its outcome as usual. This is safe: each node writes the
    envelope it delivered from, in which a recipient is marked done only
    when that node (or one before it) delivered or bounced it, and the
    entry is removed only when every recipient is done. Whichever node
    writes last, a recipient still to deliver is never marked done and an
    entry with one is never removed: the cost is a duplicate delivery (the
    other node delivering the same recipients), never a loss.
  * A database error skips that round (logged, not raised); the loop ends
    only when cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection

from pigeon.qmgr.ports import SharedClaims
from pigeon.qmgr.settle import STORE_ERRORS

__all__ = ["keep_leases", "renew_once"]

log = logging.getLogger("pigeon.queue")


async def renew_once(
    claims: SharedClaims, owned: Callable[[], Collection[str]], taken_back: Callable[[], None]
) -> tuple[list[str], list[str]]:
    """One round (see the contract): (ids whose claim was lost, ids released)."""
    ids = sorted(owned())
    kept = await asyncio.to_thread(claims.renew_leases, ids) if ids else []
    # An id missing from `kept` may simply have finished meanwhile: only one
    # still owned now has lost its claim.
    still = owned()
    lost = sorted(set(ids).difference(kept).intersection(still))
    for qid in lost:
        log.warning(
            "queue_id=%s: claim lost (its lease expired and another node took the entry "
            "over); finishing this delivery anyway: a duplicate is possible, never a loss",
            qid,
        )
    released = await asyncio.to_thread(claims.release_expired, time.time())
    if released:
        log.info(
            "queue: %d entries whose lease expired (their node stopped renewing) are due again",
            len(released),
        )
        taken_back()
    return lost, released


async def keep_leases(
    claims: SharedClaims, owned: Callable[[], Collection[str]], taken_back: Callable[[], None]
) -> None:
    """Renew and release every `claims.lease / 3` seconds until cancelled."""
    period = claims.lease / 3
    while True:
        await asyncio.sleep(period)
        try:
            await renew_once(claims, owned, taken_back)
        except STORE_ERRORS as exc:
            log.warning("queue: lease renewal failed, retrying in %.1fs: %s", period, exc)
