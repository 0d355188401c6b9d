"""Captured mail (docs/capture.md): release, delete and the size and age limits.

Contract:
  * Captured mail is queue entries in state 'capture' (pigeon.vocab
    QueueState.CAPTURE), committed by the SMTP side like any accepted mail
    (net/intake.py: same group commit, so a 250 means fsync'ed, and it
    survives a restart or a SIGKILL; a queue rebuilt from its files keeps
    it captured, queue/recovery.py). The manager's scheduler only ever
    asks for 'incoming' and 'deferred' entries (queue/api.py `due`), so a
    captured message is never delivered, bounced or reported, and no
    operator action of qmgr/operator.py applies to that state.
  * The queue manager alone changes queue state (CONTRIBUTING.md, rule 8):
    these actions run in the manager's process under its operator lock
    (qmgr/operator.py Rule 1), each change conditional on 'capture'.
      release  capture -> incoming, due now, with its original envelope
               (sender, recipients, parameters); its tenant is cleared and
               its arrival time set to the release, so the queue lifetime
               and the delay warning count from then. It is then handed to
               the manager as new mail: routing, retries, bounces, DSNs.
      delete   capture -> removed, no report.
      sweep    the limits: every captured message older than `max_age`,
               then the oldest ones until the rest fit in `max_size`
               octets, removed (`over_limits`, pure, time passed in).
  * `tenant` narrows release and delete: an entry of another tenant is
    "unknown" to the caller (a tenant-limited API token, web/capture_routes.py),
    exactly as one that does not exist.
  * Every change is on the mail log ("released from capture", "removed
    (capture ...)"). Store errors propagate as StoreError.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pigeon.qmgr.operator import ActionResult
from pigeon.qmgr.ports import Clock, MailLog, ManagerStore
from pigeon.queue.model import Envelope
from pigeon.vocab import QueueState, StoreError

__all__ = ["CaptureActions", "over_limits"]

log = logging.getLogger("pigeon.queue")

_CAPTURE = (QueueState.CAPTURE,)


def over_limits(
    entries: Iterable[tuple[str, float, int]], now: float, *, max_size: int, max_age: float
) -> list[str]:
    """The ids to remove, oldest first, of (id, received_at, size) entries:
    those older than `max_age`, then the oldest until the rest total at
    most `max_size` octets. Pure."""
    ordered = sorted(entries, key=lambda e: (e[1], e[0]))
    doomed = [qid for qid, at, _ in ordered if now - at > max_age]
    kept = [(qid, size) for qid, at, size in ordered if now - at <= max_age]
    total = sum(size for _, size in kept)
    for qid, size in kept:
        if total <= max_size:
            break
        doomed.append(qid)
        total -= size
    return doomed


class CaptureActions:
    """Release, delete, sweep (see the module contract)."""

    def __init__(
        self,
        *,
        store: ManagerStore,
        lock: Callable[[], asyncio.Lock],
        maillog: MailLog,
        clock: Clock,
        submit: Callable[[Envelope], None],
    ) -> None:
        self._store = store
        self._lock = lock
        self._maillog = maillog
        self._clock = clock
        self._submit = submit

    async def _select(
        self, ids: Sequence[str], tenant: str | None
    ) -> tuple[list[str], ActionResult]:
        result = ActionResult()
        entries = await asyncio.to_thread(lambda: [self._store.entry(q) for q in ids])
        todo = []
        for qid, entry in zip(ids, entries, strict=True):
            if (
                entry is None
                or entry.state != QueueState.CAPTURE
                or entry.envelope is None
                or (tenant is not None and entry.envelope.capture != tenant)
            ):
                hidden = entry is None or entry.state != QueueState.CAPTURE or tenant is not None
                result.skipped.append(qid)
                if hidden:
                    result.unknown.append(qid)
            else:
                todo.append(qid)
        return todo, result

    async def release(self, ids: Sequence[str], tenant: str | None = None) -> ActionResult:
        """Hand captured messages to the real queue (module contract)."""
        released: list[Envelope] = []
        async with self._lock():
            todo, result = await self._select(list(dict.fromkeys(ids)), tenant)
            now = self._clock()
            for qid in todo:
                env = await asyncio.to_thread(self._store.load, qid)
                tenant_was = env.capture
                env.capture, env.received_at = "", now
                moved = await asyncio.to_thread(self._release_one, env, now)
                if moved:
                    result.done.append(qid)
                    released.append(env)
                    self._maillog.log(qid, {"tenant": tenant_was}, "released from capture")
                else:
                    result.skipped.append(qid)
        for env in released:
            self._submit(env)
        return result

    def _release_one(self, env: Envelope, now: float) -> bool:
        # Under the operator lock nobody else moves a 'capture' entry; the
        # check makes a second release of the same id a no-op.
        if self._store.states([env.queue_id]).get(env.queue_id) != QueueState.CAPTURE:
            return False
        self._store.update(env, QueueState.INCOMING, now)
        return True

    async def delete(
        self, ids: Sequence[str], tenant: str | None = None, reason: str = "deleted"
    ) -> ActionResult:
        """Remove captured messages, without any report."""
        async with self._lock():
            todo, result = await self._select(list(dict.fromkeys(ids)), tenant)
            if todo:
                await asyncio.to_thread(self._store.remove_many, todo)
            result.done = todo
        for qid in todo:
            self._maillog.log(qid, {"status": "removed"}, f"capture {reason}")
        return result

    async def sweep(self, *, max_size: int, max_age: float) -> list[str]:
        """Apply the limits now; the ids removed."""
        entries = await asyncio.to_thread(self._store.list, QueueState.CAPTURE)
        facts = [
            (e.queue_id, e.envelope.received_at, e.envelope.size)
            for e in entries
            if e.envelope is not None
        ]
        doomed = over_limits(facts, self._clock(), max_size=max_size, max_age=max_age)
        if not doomed:
            return []
        result = await self.delete(doomed, reason="limit (max_size or max_age)")
        return result.done

    async def run(self, stop: asyncio.Event, limits: Callable[[], Any]) -> None:
        """Sweep every `limits().sweep_interval` seconds until `stop` is set;
        `limits()` is the current `[capture]` (pigeon.config.capture)."""
        while not stop.is_set():
            cfg = limits()
            try:
                await self.sweep(max_size=cfg.max_size, max_age=cfg.max_age)
            except StoreError as exc:
                log.warning("capture limits not applied: %s; trying again later", exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=cfg.sweep_interval)
            except TimeoutError:
                pass
