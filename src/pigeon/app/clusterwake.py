"""Wake the queue manager when another node commits mail to a shared queue, or flushes it.

Contract:
  * `wake_on_new_mail(store, nudge, stop, flush=None)` runs until `stop`
    is set: it waits in a worker thread on the store's LISTEN connection
    (`PgQueueStore.wait_for_events`, at most POLL seconds per wait, so the
    stop is seen within that) and
      - calls `nudge()` (the manager's `Qmgr.nudge`, on the event loop)
        once per burst when any node committed new mail, so an idle node
        starts fresh mail at once instead of at its next
        `queue.run_interval` scan (issue 17: LISTEN/NOTIFY wakes idle
        nodes), and when a node asks every node to look (`{"op": "wake"}`:
        mail released or requeued there);
      - runs `flush(domain)` (the manager's `Qmgr.flush`) when ANOTHER node
        was told `pigeon queue flush` (`{"op": "flush", "domain"}`, sent by
        admin/ops.py through `PgQueueStore.tell_nodes`): this node's dead
        destinations get another chance too, and it takes its share of the
        mail made due (the moves are conditional: a second flush of the same
        entries changes nothing but their due time). A message this node
        sent itself is ignored (the local flush did it).
      - runs `refresh()` when a node or `pigeon domain|alias` announces a
        change of the shared domains and aliases (`{"op": "directory"}`,
        store/pg/domains.py), and once after every (re)start of listening:
        a change made while this node was not listening was announced to
        nobody. `directory_refresh(config, reload)` makes that callable:
        it reads the database and, when its rows differ from those the
        running configuration was built with, runs the node's reload (the
        path of `pigeon reload`: app/lifecycle.py), which merges them anew.
  * Only a store with `wait_for_events` (a shared queue) is watched; the
    composition root (app/lifecycle.py) starts it for the process that
    runs the manager.
  * A failing database never ends it: a StoreError waits RETRY seconds (or
    the stop) and listens again; the manager's own scans go on meanwhile.
    An unreadable message is logged and skipped; a failing flush is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pigeon.config.schema import Config
from pigeon.store.factory import shared_directory_changed
from pigeon.vocab.errors import StoreError

__all__ = ["POLL", "RETRY", "Listens", "directory_refresh", "wake_on_new_mail"]

log = logging.getLogger("pigeon.queue")

POLL = 1.0  # seconds per wait: bounds how long the stop waits for the thread
RETRY = 1.0  # seconds after a database error before listening again
NEW_MAIL, ADMIN = "pigeon_queue", "pigeon_admin"  # store/pg: committer.CHANNEL, ADMIN_CHANNEL


class Listens(Protocol):
    @property
    def node(self) -> str: ...

    def wait_for_events(self, timeout: float) -> list[tuple[str, str]]: ...


async def wake_on_new_mail(
    store: Listens,
    nudge: Callable[[], None],
    stop: asyncio.Event,
    flush: Callable[[str | None], Awaitable[Any]] | None = None,
    refresh: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    failing = False
    listening = False  # LISTEN in place: changes from now on are announced to us
    while not stop.is_set():
        try:
            events = await asyncio.to_thread(store.wait_for_events, POLL)
        except StoreError as exc:
            if not failing:
                log.warning("listening for new mail in the shared queue failed: %s", exc)
            failing, listening = True, False
            try:
                await asyncio.wait_for(stop.wait(), RETRY)
            except TimeoutError:
                pass
            continue
        failing = False
        wake, directory, listening = False, not listening, True
        for channel, payload in events:
            if channel != ADMIN:
                wake = True
                continue
            try:
                msg = json.loads(payload)
                op, sender = msg["op"], msg.get("from")
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable message on %s ignored: %r", ADMIN, payload[:200])
                continue
            if op == "wake":
                wake = True
            elif op == "directory":
                directory = True
            elif op == "flush" and flush is not None and sender != store.node:
                domain = msg.get("domain")
                try:
                    await flush(domain if isinstance(domain, str) and domain else None)
                except StoreError as exc:
                    log.warning("flush asked by node %s failed here: %s", sender, exc)
                else:
                    log.info("queue flushed as node %s asked (domain %s)", sender, domain or "all")
        if wake:
            nudge()
        if directory and refresh is not None:
            await refresh()


def directory_refresh(
    config: Callable[[], Config], reload: Callable[[], Awaitable[Any]]
) -> Callable[[], Awaitable[None]]:
    """The `refresh` of `wake_on_new_mail`: reload when the shared rows changed."""

    async def refresh() -> None:
        try:
            changed = await asyncio.to_thread(shared_directory_changed, config())
        except StoreError as exc:
            log.warning("reading the shared domains and aliases failed: %s", exc)
            return
        if changed:
            log.info("the shared domains and aliases changed: reloading")
            await reload()

    return refresh
