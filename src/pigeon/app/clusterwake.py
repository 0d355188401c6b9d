"""Wake the queue manager when another node commits mail to a shared queue.

Contract:
  * `wake_on_new_mail(store, nudge, stop)` runs until `stop` is set: it
    waits in a worker thread on the store's LISTEN connection
    (`PgQueueStore.wait_for_mail`, at most POLL seconds per wait, so the
    stop is seen within that) and calls `nudge()` (the manager's
    `Qmgr.nudge`, on the event loop) when any node committed new mail, so
    an idle node starts fresh mail at once instead of at its next
    `queue.run_interval` scan (issue 17: LISTEN/NOTIFY wakes idle nodes).
  * Only a store with `wait_for_mail` (a shared queue) is watched; the
    composition root (app/lifecycle.py) starts it for the process that
    runs the manager.
  * A failing database never ends it: a StoreError waits RETRY seconds (or
    the stop) and listens again; the manager's own scans go on meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from pigeon.vocab.errors import StoreError

__all__ = ["POLL", "RETRY", "Listens", "wake_on_new_mail"]

log = logging.getLogger("pigeon.queue")

POLL = 1.0  # seconds per wait: bounds how long the stop waits for the thread
RETRY = 1.0  # seconds after a database error before listening again


class Listens(Protocol):
    def wait_for_mail(self, timeout: float) -> bool: ...


async def wake_on_new_mail(store: Listens, nudge: Callable[[], None], stop: asyncio.Event) -> None:
    failing = False
    while not stop.is_set():
        try:
            got = await asyncio.to_thread(store.wait_for_mail, POLL)
        except StoreError as exc:
            if not failing:
                log.warning("listening for new mail in the shared queue failed: %s", exc)
            failing = True
            try:
                await asyncio.wait_for(stop.wait(), RETRY)
            except TimeoutError:
                pass
            continue
        failing = False
        if got:
            nudge()
