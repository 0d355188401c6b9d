"""Operator actions on the queue: hold, release, delete, bounce, requeue, flush.

Contract:
  * The actions are composed over the queue interfaces (pigeon/queue/api.py:
    conditional moves, removal, listings) and the manager's own state; the
    manager stays the single owner of queue state (CONTRIBUTING.md, rule 8):
    the control socket (pigeon.admin, above this package) calls these
    through the manager and changes the queue no other way.
  * Every action takes queue ids, or `None` for "every entry it applies to",
    and returns an `ActionResult`: `done` (changed now), `pending` (being
    delivered right now: the action is applied when that attempt ends, if
    the message is still queued) and `skipped` (no such entry, or in a
    state the action does not apply to); `unknown` lists the skipped ids
    that are not in the queue at all (the CLI exits 65 for them).
  * Rule 1 (no race with deliveries): actions and the manager's own
    "start work" step (a scan, or the fast path for fresh mail, see
    qmgr/runner.py) hold one asyncio lock (`OperatorActions.lock()`), and
    every state change is conditional on the current state (`move(...,
    from_states=...)`), so an entry is never both held and delivered, and a
    delivery's final update never silently undoes an action. The fast path
    starts an entry only if it claims it from 'incoming' (conditionally,
    like the actions), so an envelope still in the manager's memory never
    undoes a hold or a delete either.
  * Which states each action applies to:
      hold      incoming, deferred            -> hold (active: pending)
      release   hold                          -> deferred, due now
      delete    incoming, deferred, hold, corrupt -> removed (active: pending)
      bounce    incoming, deferred, hold      -> every recipient not yet final
                bounces (5.0.0, "returned to sender by the mail system
                administrator"), the sender gets a DSN (qmgr/notify.py),
                the entry is removed (active: pending)
      requeue   incoming, deferred            -> incoming, due now
      flush     deferred (with a pending recipient at `domain` if given)
                -> due now; dead-destination backoff (destinations.py
                Rule 6) is forgotten for that domain (every destination
                without one)
  * Pending actions: the strongest wish wins (delete > bounce > hold); it
    runs when the attempt's outcome is durable. A store failure then is
    logged, never silently dropped.
  * A queue several nodes share (a store with `nodes()`, store/pg): an
    entry 'active' that this manager is not delivering is another node's
    attempt. Its pending action is watched from here: every REMOTE_POLL
    seconds its state is read, and once it is no longer 'active' (that
    attempt ended: deferred, or removed when delivered) the action runs
    here as above. So `pigeon queue hold ID` on any node holds mail
    another node is delivering, after that attempt (or after the next one,
    should a node take it again between two looks). The watch lives in
    this process: a node stopped first drops it (one log line).

  * Every change is logged on the mail log ("hold", "released", "removed
    (deleted by administrator)", "requeued", ...), so `pigeon log ID` tells
    it too. The blocking store calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pigeon.qmgr.ports import Clock, MailLog, ManagerStore
from pigeon.qmgr.results import LogLine, bounce_rest
from pigeon.qmgr.scheduler import Scheduler
from pigeon.queue.filters import has_domain
from pigeon.queue.model import Envelope
from pigeon.vocab import CorruptEntry, Nexthop, QueueState, StoreError

__all__ = [
    "ADMIN_BOUNCE_STATUS",
    "ADMIN_BOUNCE_TEXT",
    "ActionResult",
    "OperatorActions",
    "has_domain",
]

log = logging.getLogger("pigeon.queue")

ADMIN_BOUNCE_STATUS = "5.0.0"
ADMIN_BOUNCE_TEXT = "returned to sender by the mail system administrator"

_WAITING = (QueueState.INCOMING, QueueState.DEFERRED)
#: Seconds between two looks at entries another node is delivering.
REMOTE_POLL = 1.0
_RANK = {"hold": 0, "bounce": 1, "delete": 2}


@dataclass(slots=True)
class ActionResult:
    done: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # the skipped ids not queued at all

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "pending": self.pending,
            "skipped": self.skipped,
            "unknown": self.unknown,
        }


class OperatorActions:
    """The actions over the store and the manager's state; see the module contract."""

    def __init__(
        self,
        *,
        store: ManagerStore,
        sched: Scheduler,
        maillog: MailLog,
        clock: Clock,
        finish: Callable[[Envelope, list[LogLine]], Awaitable[None]],
        nudge: Callable[[], None],
    ) -> None:
        self._store = store
        self._sched = sched
        self._maillog = maillog
        self._clock = clock
        self._finish = finish
        self._nudge = nudge
        self.pending: dict[str, str] = {}  # qid -> action after its delivery
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._remote: set[str] = set()  # pending, being delivered by another node
        self._watcher: asyncio.Task[None] | None = None

    def lock(self) -> asyncio.Lock:
        """The lock of Rule 1 (one per running event loop)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    # --- the actions ------------------------------------------------------------------

    async def hold(self, ids: list[str] | None = None) -> ActionResult:
        """Put entries on hold: no delivery until `release`."""
        async with self.lock():
            todo, result = await self._select(ids, _WAITING)
            result.done = await asyncio.to_thread(
                self._store.move, todo, QueueState.HOLD, from_states=_WAITING
            )
            result.skipped += [q for q in todo if q not in result.done]
            self._after(result.pending, "hold")
        self._log_action(result.done, "on hold by administrator", "hold")
        return result

    async def release(self, ids: list[str] | None = None) -> ActionResult:
        """Take entries off hold; they are due at once."""
        async with self.lock():
            todo, result = await self._select(ids, (QueueState.HOLD,))
            result.skipped += result.pending  # active entries are not on hold
            result.pending = []
            result.done = await asyncio.to_thread(
                self._store.move,
                todo,
                QueueState.DEFERRED,
                self._clock(),
                from_states=(QueueState.HOLD,),
            )
        self._log_action(result.done, "released from hold")
        if result.done:
            self._nudge()
        return result

    async def delete(self, ids: list[str] | None = None) -> ActionResult:
        """Remove entries without any report (Postfix `postsuper -d`)."""
        states = (*_WAITING, QueueState.HOLD, QueueState.CORRUPT)
        async with self.lock():
            todo, result = await self._select(ids, states)
            if todo:
                # One transaction: all removed, or none (the error propagates).
                await asyncio.to_thread(self._store.remove_many, todo)
            result.done = list(todo)
            self._after(result.pending, "delete")
        self._log_action(result.done, "deleted by administrator", "removed")
        return result

    async def bounce(self, ids: list[str] | None) -> ActionResult:
        """Return entries to their senders with a failure DSN, then remove them."""
        async with self.lock():
            todo, result = await self._select(ids, (*_WAITING, QueueState.HOLD))
            for qid in todo:
                try:
                    env = await asyncio.to_thread(self._store.load, qid)
                except StoreError:  # CorruptEntry too: quarantined meanwhile
                    result.skipped.append(qid)
                    continue
                logs: list[LogLine] = []
                bounce_rest(env, ADMIN_BOUNCE_STATUS, ADMIN_BOUNCE_TEXT, logs, now=self._clock())
                await self._finish(env, logs)  # reports, removal, log lines
                result.done.append(qid)
            self._after(result.pending, "bounce")
        return result

    async def requeue(self, ids: list[str] | None = None) -> ActionResult:
        """Make waiting entries due now, as new mail (Postfix `postsuper -r`)."""
        async with self.lock():
            todo, result = await self._select(ids, _WAITING)
            result.skipped += result.pending  # being delivered already
            result.pending = []
            result.done = await asyncio.to_thread(
                self._store.move, todo, QueueState.INCOMING, self._clock(), from_states=_WAITING
            )
        self._log_action(result.done, "requeued by administrator")
        if result.done:
            self._nudge()
        return result

    async def flush(self, domain: str | None = None) -> dict[str, Any]:
        """Deferred mail (for `domain`) is due now; dead destinations get another chance."""
        domain = domain.lower().rstrip(".") if domain else None
        async with self.lock():
            entries = await asyncio.to_thread(self._store.list, QueueState.DEFERRED)
            ids = [
                e.queue_id
                for e in entries
                if domain is None or (e.envelope is not None and has_domain(e.envelope, domain))
            ]
            moved = await asyncio.to_thread(
                self._store.move,
                ids,
                QueueState.DEFERRED,
                self._clock(),
                from_states=(QueueState.DEFERRED,),
            )
            revived = self._sched.dests.revive(
                None if domain is None else (lambda nh: _domain_of(nh) == domain)
            )
        if moved or revived:
            self._nudge()
        return {"done": moved, "destinations_revived": revived}

    # --- after a delivery ---------------------------------------------------------------

    async def after_delivery(self, qid: str) -> None:
        """Run the action an operator asked for while `qid` was being delivered."""
        action = self.pending.pop(qid, None)
        if action is None:
            return
        try:
            await getattr(self, action)([qid])
        except CorruptEntry:
            pass  # unreadable meanwhile: nothing left to act on
        except StoreError as exc:
            # The store failed (disk full...): the entry stays queued, the
            # operator's wish is not silently dropped.
            log.warning(
                "queue_id=%s: %s asked by the administrator not done: %s; ask again",
                qid,
                action,
                exc,
            )

    def after_delivery_soon(self, qid: str) -> None:
        """`after_delivery(qid)` in its own task, when an action waits for it."""
        if qid not in self.pending:
            return
        task = asyncio.get_running_loop().create_task(self._after_delivery_logged(qid))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _after_delivery_logged(self, qid: str) -> None:
        try:
            await self.after_delivery(qid)
        except Exception:
            log.exception("queue_id=%s: operator action after delivery failed", qid)

    # --- helpers ------------------------------------------------------------------------

    async def _select(
        self, ids: list[str] | None, states: tuple[QueueState, ...]
    ) -> tuple[list[str], ActionResult]:
        """The ids to act on now; active ones go to result.pending, unknown to skipped."""
        result = ActionResult()
        store = self._store
        if ids is None:
            entries = await asyncio.to_thread(store.list)
            found = {e.queue_id: e.state for e in entries}
            ids = [q for q, s in found.items() if s in states or s == QueueState.ACTIVE]
        else:
            found = await asyncio.to_thread(store.states, list(dict.fromkeys(ids)))
        todo = []
        for qid in dict.fromkeys(ids):
            state = found.get(qid)
            if state is None:
                result.skipped.append(qid)
                result.unknown.append(qid)
            elif state == QueueState.ACTIVE or qid in self._sched.inflight:
                result.pending.append(qid)
            elif state in states:
                todo.append(qid)
            else:
                result.skipped.append(qid)
        return todo, result

    def _after(self, qids: list[str], action: str) -> None:
        for qid in qids:
            old = self.pending.get(qid)
            if old is None or _RANK[action] > _RANK[old]:
                self.pending[qid] = action
        if hasattr(self._store, "nodes"):  # a shared queue: maybe another node's attempts
            remote = [q for q in qids if q not in self._sched.inflight]
            if remote:
                self._remote.update(remote)
                if self._watcher is None or self._watcher.done():
                    self._watcher = asyncio.get_running_loop().create_task(self._watch_remote())

    async def _watch_remote(self) -> None:
        """Run the pending actions of other nodes' attempts once they end (contract)."""
        try:
            while self._remote:
                await asyncio.sleep(REMOTE_POLL)
                ids = sorted(self._remote)
                try:
                    states = await asyncio.to_thread(self._store.states, ids)
                except StoreError as exc:
                    log.debug("watching entries other nodes deliver: %s", exc)
                    continue
                for qid in ids:
                    if states.get(qid) == QueueState.ACTIVE:
                        continue  # still in an attempt (ours too, if we took it since)
                    self._remote.discard(qid)
                    await self._after_delivery_logged(qid)
        except asyncio.CancelledError:
            if self._remote:
                log.warning(
                    "stopping: actions asked for %d entries other nodes were delivering "
                    "not done: %s; ask again on a running node",
                    len(self._remote),
                    " ".join(sorted(self._remote)[:20]),
                )
            raise

    def _log_action(self, qids: list[str], detail: str, status: str | None = None) -> None:
        for qid in qids:
            self._maillog.log(qid, {"status": status} if status else {}, detail)


def _domain_of(key: object) -> str:
    return key.domain if isinstance(key, Nexthop) else ""
