"""What the queue manager is delivering right now, and how a stop abandons it.

    inflight = InFlight()
    inflight.track(task, queue_id)            # the runner, for each delivery task
    with inflight.run(envelope) as run:       # qmgr/attempt.py, one delivery run
        with run.call(nexthop, recipients):   # around each agent call
            ...
    await inflight.abandon(maillog)           # the stop: log, cancel, wait (bounded)

Contract:
  * `InFlight` only records; it decides nothing. For each delivery task it
    knows the queue id; for each delivery run its stage and the agent calls
    in progress: next hop, recipients, and whether the agent said its next
    hop may already hold the message (delivery/api.py, hand-over).
  * `abandon(maillog)` is the queue manager's part of the stop
    (app/lifecycle.py). Deliveries to a next hop (SMTP, LMTP: the
    connection, the DNS look-ups, the transfer) and runs not yet at their
    agents are abandoned at once: one mail-log line per abandoned attempt,
    then the task is cancelled. Local disk work already under way, a run
    whose only agent calls in progress are Maildir writes or whose outcome
    is being recorded, gets LOCAL_WAIT seconds to finish (abandoning it
    would deliver it twice for nothing: it does not wait on a peer); what
    is left then is abandoned the same way. Cancelled tasks get
    ABANDON_WAIT seconds to unwind (a task waiting on a worker thread stops
    waiting at once; the thread itself is not waited for). The line, e.g.

        4F2A9C: recipients=bob@example.org, relay=smtp:example.org, status=abandoned (pigeon is stopping: tried again after the next start)

    names the queue id, the recipients and the next hop ("relay" is absent
    when no agent was running: the run was starting, waiting for a
    destination slot, or recording its outcome), and ends with "may be
    delivered twice" when a next hop may already hold the message: an
    agent past its hand-over, or an outcome being recorded after one.
    Postfix makes the same trade-off: the message stays in the queue
    ('active': recovery takes it back at the next start, queue/recovery.py),
    so nothing acknowledged is lost, and at worst it arrives twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pigeon.delivery.api import watching_handover
from pigeon.qmgr.ports import MailLog
from pigeon.qmgr.results import LOCAL
from pigeon.queue.model import Envelope
from pigeon.vocab import Nexthop

__all__ = ["ABANDON_WAIT", "LOCAL_WAIT", "Call", "InFlight", "Run"]

log = logging.getLogger("pigeon.queue")

#: Seconds cancelled delivery tasks are given to unwind (module contract).
ABANDON_WAIT = 1.0
#: Seconds a Maildir write in progress, or an outcome being recorded, gets to finish.
LOCAL_WAIT = 1.5

ABANDONED = "pigeon is stopping: tried again after the next start"
TWICE = "; the next hop may already have the message: it may be delivered twice"


@dataclass(slots=True)
class Call:
    """One agent call in progress."""

    nexthop: Nexthop
    recipients: tuple[str, ...]
    handed_over: bool = False


@dataclass(slots=True)
class Run:
    """One delivery run of one message."""

    queue_id: str
    recipients: tuple[str, ...]  # not final when the run began
    calls: list[Call] = field(default_factory=list)
    handed_over: bool = False  # some call of this run passed its hand-over
    recording: bool = False  # the outcome is being made durable

    @contextmanager
    def call(self, nexthop: Nexthop, recipients: Iterable[str]) -> Iterator[Call]:
        """Around one agent call: its hand-over is watched (delivery/api.py)."""
        call = Call(nexthop, tuple(recipients))

        def mark() -> None:
            call.handed_over = self.handed_over = True

        self.calls.append(call)
        try:
            with watching_handover(mark):
                yield call
        finally:
            self.calls.remove(call)


class InFlight:
    """The delivery tasks and runs of one queue manager (module contract)."""

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[None], str] = {}
        self._runs: dict[str, Run] = {}

    def track(self, task: asyncio.Task[None], queue_id: str) -> None:
        self._tasks[task] = queue_id
        task.add_done_callback(self._untrack)

    def _untrack(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    @contextmanager
    def run(self, env: Envelope) -> Iterator[Run]:
        run = Run(env.queue_id, tuple(r.address for r in env.recipients if not r.final))
        self._runs[env.queue_id] = run
        try:
            yield run
        finally:
            self._runs.pop(env.queue_id, None)

    def lines(self, queue_id: str) -> list[tuple[dict[str, str], str]]:
        """(fields, detail) of each attempt in progress for `queue_id` (module contract)."""
        run = self._runs.get(queue_id)
        if run is None:  # loading its entry: no run yet
            return [({"status": "abandoned"}, ABANDONED)]
        out = []
        for call in run.calls:
            fields = {
                "recipients": ",".join(call.recipients),
                "relay": str(call.nexthop),
                "status": "abandoned",
            }
            out.append((fields, ABANDONED + (TWICE if call.handed_over else "")))
        if not run.calls:
            fields = {"recipients": ",".join(run.recipients), "status": "abandoned"}
            twice = run.recording and run.handed_over
            out.append((fields, ABANDONED + (TWICE if twice else "")))
        return out

    def _local(self, queue_id: str) -> bool:
        """Only local disk work under way for `queue_id` (module contract)."""
        run = self._runs.get(queue_id)
        if run is None:
            return False
        return run.recording or (
            bool(run.calls) and all(c.nexthop.transport == LOCAL for c in run.calls)
        )

    def _cancel(self, tasks: list[asyncio.Task[None]], maillog: MailLog) -> None:
        for task in tasks:
            queue_id = self._tasks.get(task)
            if queue_id is None or task.done():
                continue
            for fields, detail in self.lines(queue_id):
                maillog.log(queue_id, dict(fields), detail)
            task.cancel()

    async def abandon(self, maillog: MailLog) -> int:
        """The stop: see the module contract. How many attempts were abandoned."""
        tasks = [t for t in self._tasks if not t.done()]
        local = [t for t in tasks if self._local(self._tasks[t])]
        now = [t for t in tasks if t not in local]
        if now:
            log.info("stop: abandoning %d delivery attempt(s) in progress", len(now))
        self._cancel(now, maillog)
        if local:
            log.info("stop: %d local delivery(ies) finishing (at most %gs)", len(local), LOCAL_WAIT)
            _, late = await asyncio.wait(local, timeout=LOCAL_WAIT)
            if late:
                log.info("stop: abandoning %d local delivery(ies) still running", len(late))
            self._cancel(list(late), maillog)
            now += late
        if not now:
            return 0
        _, pending = await asyncio.wait(now, timeout=ABANDON_WAIT)
        if pending:
            log.warning("stop: %d delivery task(s) did not unwind in time", len(pending))
        return len(now)
