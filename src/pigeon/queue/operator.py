"""Operator actions on the queue: hold, release, delete, bounce, requeue, flush.

These are `QueueManager` methods (the class inherits `OperatorActions`),
kept in their own module only for size: the manager stays the single owner
of queue state (CONTRIBUTING.md, rule 8) and the control socket (pigeon.admin.control)
calls these and nothing else to change the queue.

Contract:
  * Every action takes queue ids, or `None` for "every entry it applies to",
    and returns an `ActionResult`: `done` (changed now), `pending` (being
    delivered right now: the action is applied when that attempt ends, if
    the message is still queued) and `skipped` (no such entry, or in a
    state the action does not apply to); `unknown` lists the skipped ids
    that are not in the queue at all (the CLI exits 65 for them).
  * Rule 1 (no race with deliveries): actions and the manager's own
    "start work" step (a scan, or the fast path for fresh mail, see
    manager.py) hold one asyncio lock, and every state change is
    conditional on the current state (`QueueStore.move(from_states=...)`),
    so an entry is never both held and delivered, and a delivery's final
    update never silently undoes an action. The fast path starts an entry
    only if it moves it from 'incoming' to 'active' (conditionally, like
    the actions), so an envelope still in the manager's memory never
    undoes a hold or a delete either.
  * Which states each action applies to:
      hold      incoming, deferred            -> hold (active: pending)
      release   hold                          -> deferred, due now
      delete    incoming, deferred, hold, corrupt -> removed (active: pending)
      bounce    incoming, deferred, hold      -> every recipient not yet final
                bounces (5.0.0, "returned to sender by the mail system
                administrator"), the sender gets a DSN (queue/notify.py),
                the entry is removed (active: pending)
      requeue   incoming, deferred            -> incoming, due now
      flush     deferred (with a pending recipient at `domain` if given)
                -> due now; dead-destination backoff (schedule.py Rule 6)
                is forgotten for that domain (every destination without one)
  * Every change is logged on the mail log ("hold", "released", "removed
    (deleted by administrator)", "requeued", ...), so `pigeon log ID` tells
    it too. The blocking store calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pigeon.queue.filters import has_domain
from pigeon.queue.model import RecipientStatus
from pigeon.queue.store import CorruptEntry, StoreError

if TYPE_CHECKING:
    from pigeon.queue.manager import QueueManager

__all__ = ["ActionResult", "OperatorActions", "ADMIN_BOUNCE_STATUS", "ADMIN_BOUNCE_TEXT"]

log = logging.getLogger("pigeon.queue")

ADMIN_BOUNCE_STATUS = "5.0.0"
ADMIN_BOUNCE_TEXT = "returned to sender by the mail system administrator"

_WAITING = ("incoming", "deferred")


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
    """Mixed into QueueManager; see the module contract."""

    # --- plumbing shared with the delivery loop ------------------------------------

    def _op_lock(self: QueueManager) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._admin_lock is None or self._admin_loop is not loop:
            self._admin_lock, self._admin_loop = asyncio.Lock(), loop
        return self._admin_lock

    async def _select(
        self: QueueManager, ids: list[str] | None, states: tuple[str, ...]
    ) -> tuple[list[str], ActionResult]:
        """The ids to act on now; active ones go to result.pending, unknown to skipped."""
        result = ActionResult()
        store = self._store
        if ids is None:
            entries = await asyncio.to_thread(store.list)
            found = {e.queue_id: e.state for e in entries}
            ids = [q for q, s in found.items() if s in states or s == "active"]
        else:
            found = await asyncio.to_thread(store.states, list(dict.fromkeys(ids)))
        todo = []
        for qid in dict.fromkeys(ids):
            state = found.get(qid)
            if state is None:
                result.skipped.append(qid)
                result.unknown.append(qid)
            elif state == "active" or qid in self._inflight:
                result.pending.append(qid)
            elif state in states:
                todo.append(qid)
            else:
                result.skipped.append(qid)
        return todo, result

    async def _after_delivery(self: QueueManager, qid: str) -> None:
        """Run the action an operator asked for while `qid` was being delivered."""
        action = self._pending_actions.pop(qid, None)
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

    def _log_action(
        self: QueueManager, qids: list[str], detail: str, status: str | None = None
    ) -> None:
        for qid in qids:
            self._maillog.log(qid, {"status": status} if status else {}, detail)

    # --- the actions ------------------------------------------------------------------

    async def hold(self: QueueManager, ids: list[str] | None = None) -> ActionResult:
        """Put entries on hold: no delivery until `release`."""
        async with self._op_lock():
            todo, result = await self._select(ids, _WAITING)
            result.done = await asyncio.to_thread(
                self._store.move, todo, "hold", from_states=_WAITING
            )
            result.skipped += [q for q in todo if q not in result.done]
            self._defer_to_after(result.pending, "hold")
        self._log_action(result.done, "on hold by administrator", "hold")
        return result

    async def release(self: QueueManager, ids: list[str] | None = None) -> ActionResult:
        """Take entries off hold; they are due at once."""
        async with self._op_lock():
            todo, result = await self._select(ids, ("hold",))
            result.skipped += result.pending  # active entries are not on hold
            result.pending = []
            result.done = await asyncio.to_thread(
                self._store.move, todo, "deferred", self._clock(), from_states=("hold",)
            )
        self._log_action(result.done, "released from hold")
        if result.done:
            self.nudge()
        return result

    async def delete(self: QueueManager, ids: list[str] | None = None) -> ActionResult:
        """Remove entries without any report (Postfix `postsuper -d`)."""
        states = ("incoming", "deferred", "hold", "corrupt")
        async with self._op_lock():
            todo, result = await self._select(ids, states)
            if todo:
                # One transaction: all removed, or none (the error propagates).
                await asyncio.to_thread(self._store.remove_many, todo)
            result.done = list(todo)
            self._defer_to_after(result.pending, "delete")
        self._log_action(result.done, "deleted by administrator", "removed")
        return result

    async def bounce(self: QueueManager, ids: list[str]) -> ActionResult:
        """Return entries to their senders with a failure DSN, then remove them."""
        states = ("incoming", "deferred", "hold")
        async with self._op_lock():
            todo, result = await self._select(ids, states)
            for qid in todo:
                try:
                    env = await asyncio.to_thread(self._store.load, qid)
                except (CorruptEntry, StoreError):
                    result.skipped.append(qid)
                    continue
                logs: list[tuple[dict, str]] = []
                for r in env.recipients:
                    if r.final:
                        continue
                    self._set(
                        r,
                        RecipientStatus.BOUNCED,
                        ADMIN_BOUNCE_STATUS,
                        ADMIN_BOUNCE_TEXT,
                        action="failed",
                        transport=r.transport,
                        remote_mta=r.remote_mta,
                    )
                    logs.append((self._fields(r, "none", "bounced"), r.diagnostic))
                await self._finish(env, logs)  # reports, removal, log lines
                result.done.append(qid)
            self._defer_to_after(result.pending, "bounce")
        return result

    async def requeue(self: QueueManager, ids: list[str] | None = None) -> ActionResult:
        """Make waiting entries due now, as new mail (Postfix `postsuper -r`)."""
        async with self._op_lock():
            todo, result = await self._select(ids, _WAITING)
            result.skipped += result.pending  # being delivered already
            result.pending = []
            result.done = await asyncio.to_thread(
                self._store.move, todo, "incoming", self._clock(), from_states=_WAITING
            )
        self._log_action(result.done, "requeued by administrator")
        if result.done:
            self.nudge()
        return result

    async def flush(self: QueueManager, domain: str | None = None) -> dict[str, Any]:
        """Deferred mail (for `domain`) is due now; dead destinations get another chance."""
        domain = domain.lower().rstrip(".") if domain else None
        async with self._op_lock():
            entries = await asyncio.to_thread(self._store.list, "deferred")
            ids = [
                e.queue_id
                for e in entries
                if domain is None or (e.envelope is not None and has_domain(e.envelope, domain))
            ]
            moved = await asyncio.to_thread(
                self._store.move, ids, "deferred", self._clock(), from_states=("deferred",)
            )
            revived = self._dests.revive(
                None if domain is None else (lambda nh: getattr(nh, "domain", "") == domain)
            )
        if moved or revived:
            self.nudge()
        return {"done": moved, "destinations_revived": revived}

    def _defer_to_after(self: QueueManager, qids: list[str], action: str) -> None:
        for qid in qids:
            # The strongest wish wins: delete > bounce > hold.
            rank = {"hold": 0, "bounce": 1, "delete": 2}
            old = self._pending_actions.get(qid)
            if old is None or rank[action] > rank[old]:
                self._pending_actions[qid] = action
