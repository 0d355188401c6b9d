"""LocalAgent: delivery into local Maildirs (transport "local"), group-committed.

    storage = MailboxStorage()                       # shared with the queue manager
    agent = LocalAgent(storage, fsync=True)
    results = await agent.deliver(request)           # one RecipientResult per recipient

Contract:
  * An ordinary `DeliveryAgent` (delivery/api.py): the queue manager hands
    it the local recipients of a message, each carrying `mailbox` (the
    Maildir the router chose, `Route.mailbox`), `delivered_to` and
    `original_to`; it returns one `RecipientResult` per recipient, in
    request order, and never raises for delivery failures.
  * Group commit: the copy of every recipient of every request in progress
    at that moment is written in ONE worker-thread call of
    `maildir.deliver_batch` (delivery/batching.py `ThreadBatcher`), with one
    fsync per new/ directory per batch, however many messages finish
    together; an idle agent writes at once (no artificial delay).
  * Results: written -> DELIVERED, 2.0.0, "delivered to maildir", action
    "delivered", timings (0, seconds from the call to the batch's end).
    Not written -> DEFERRED with `maildir.failure_status` (4.3.1 mail system
    full, 4.2.2 mailbox full, 4.3.0), diagnostic "maildir delivery failed:
    <reason>", and `storage_fault` set when OUR storage failed (ENOSPC, EIO,
    EROFS, EFBIG: the manager retries after its short storage back-off). A
    recipient without a Maildir (a routing bug) is deferred 4.3.0, never
    bounced. Whether a local mailbox exists is the router's question, asked
    before (pigeon/qmgr/dispatch.py).
  * Storage health (`MailboxStorage`, one per process, shared with the
    queue manager): every fault of our storage is told to `health` and makes
    that Maildir's tmp/ the place to probe; every success is told too. While
    the Maildirs are degraded, the manager's storage retry rounds call
    `probe()` (pigeon/qmgr/settle.py Rule 3).
  * `delivery.api.handed_over()` is called before the Maildir writes begin.
  * Never touches the queue store; reads content only through the request's
    `MessageContent`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from pathlib import Path

from pigeon.delivery.api import (
    DeliveryRecipient,
    DeliveryRequest,
    Outcome,
    RecipientResult,
    handed_over,
)
from pigeon.delivery.batching import ThreadBatcher
from pigeon.delivery.maildir import JobError, MaildirJob, deliver_batch, failure_status
from pigeon.fsutil import write_probe
from pigeon.queue.health import StorageHealth, is_storage_fault

__all__ = ["BatchWriter", "LocalAgent", "MailboxStorage"]

#: Writes a batch of jobs (worker thread): per job (started, ended, error or None).
BatchWriter = Callable[[list[MaildirJob]], list[tuple[float, float, JobError | None]]]

DELIVERED_TEXT = "delivered to maildir"


class MailboxStorage:
    """Is the storage under the Maildirs failing? (module contract)"""

    def __init__(self, *, fsync: bool = True, health: StorageHealth | None = None) -> None:
        self.health = health if health is not None else StorageHealth("mailbox")
        #: tmp/ of the last Maildir our storage failed in: where to probe.
        self.probe_dir: Path | None = None
        self._fsync = fsync

    def failed(self, err: BaseException, maildir: Path) -> None:
        self.health.failed(err)
        self.probe_dir = Path(maildir) / "tmp"

    def probe(self) -> None:
        """Blocking: while degraded, write a probe file in the failing Maildir's
        tmp/ and tell `health` how it went. A Maildir that is gone (not a
        storage fault) is not probed again: the next delivery decides."""
        directory = self.probe_dir
        if directory is None or not self.health.degraded:
            return
        try:
            write_probe(directory, self._fsync)
        except OSError as exc:
            if is_storage_fault(exc):
                self.health.failed(exc)
            else:
                self.probe_dir = None
            return
        self.health.succeeded()


class LocalAgent:
    """DeliveryAgent for transport "local"; see the module contract."""

    def __init__(
        self,
        storage: MailboxStorage | None = None,
        *,
        fsync: bool = True,
        clock: Callable[[], float] = time.time,
        writer: BatchWriter | None = None,
    ) -> None:
        self.storage = storage if storage is not None else MailboxStorage(fsync=fsync)
        self._clock = clock
        write = writer or functools.partial(deliver_batch, fsync=fsync, clock=clock)
        self._batcher: ThreadBatcher[MaildirJob, tuple[float, float, JobError | None]] = (
            ThreadBatcher(write)
        )

    @property
    def batches(self) -> int:
        """Worker-thread calls so far (each one group commit), for tests and profiling."""
        return self._batcher.batches

    async def deliver(self, request: DeliveryRequest) -> list[RecipientResult]:
        started = self._clock()
        todo = [r for r in request.recipients if r.mailbox is not None]
        jobs = [
            MaildirJob(
                r.mailbox,  # type: ignore[arg-type]  # filtered above
                request.content,
                request.sender,
                r.delivered_to or None,
                r.original_to or None,
            )
            for r in todo
        ]
        if jobs:
            handed_over()  # a Maildir file may appear from here on
        if len(jobs) == 1:  # the common case: no task per job
            written = [await self._batcher.submit(jobs[0])]
        else:
            written = list(await asyncio.gather(*(self._batcher.submit(j) for j in jobs)))
        results = iter(written)  # in the order of `todo`
        return [
            self._result(r, next(results), started) if r.mailbox is not None else _no_maildir(r)
            for r in request.recipients
        ]

    def _result(
        self,
        rcpt: DeliveryRecipient,
        written: tuple[float, float, JobError | None],
        started: float,
    ) -> RecipientResult:
        _, ended, err = written
        if err is None:
            self.storage.health.succeeded()
            return RecipientResult(
                rcpt.address,
                Outcome.DELIVERED,
                "2.0.0",
                DELIVERED_TEXT,
                action="delivered",
                timings=(0.0, max(0.0, ended - started)),
            )
        dsn, reason, ours = failure_status(err)
        if ours and rcpt.mailbox is not None:
            self.storage.failed(err, rcpt.mailbox)
        return RecipientResult(
            rcpt.address,
            Outcome.DEFERRED,
            dsn,
            f"maildir delivery failed: {reason}",
            action="delayed",
            storage_fault=ours,
        )


def _no_maildir(rcpt: DeliveryRecipient) -> RecipientResult:
    return RecipientResult(
        rcpt.address,
        Outcome.DEFERRED,
        "4.3.0",
        "maildir delivery failed: no Maildir for this recipient",
        action="delayed",
    )
