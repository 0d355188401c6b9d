"""Local delivery at the accept: Maildir copies written before the 250, no queue entry.

    direct = DirectDelivery(router, local_agent, record)        # qmgr/wiring.py
    outcome = await direct.deliver(envelope, spool.memory_content())

Why: for mail whose every recipient is a local Maildir, going through the
queue costs a content file, a directory entry and a database row before the
250, then a claim, a second copy into the Maildir and a removal after it.
Writing the Maildir copies as the accept's durable step does the same work
once (issue 16: "local delivery without a second trip").

Contract:
  * `deliver(env, content)` returns None when the message is not for this
    path, and then has changed nothing: `env` goes to the queue as before.
    The path takes a message only when
      - its content is whole in memory (`Spool.memory_content()`, up to
        queue/spool.py's spill threshold: larger mail takes the queue, which
        streams it);
      - no recipient asked for a success notice (RFC 3461 §4.1 NOTIFY=SUCCESS:
        the queue manager writes those reports);
      - routing every recipient (qmgr/dispatch.py, the same code and the same
        alias expansion and duplicate merging the queue manager uses) gives
        exactly one request, for transport "local", with nothing decided
        without an agent (no unknown mailbox to bounce, no other transport).
  * Otherwise it writes the copies through the shared `LocalAgent`
    (delivery/local.py: group-committed with the queue manager's own
    Maildir writes; each file fsynced before it is linked into new/, each
    new/ directory fsynced once per batch) and applies the results to the
    envelope's recipients as a delivery run would (qmgr/results.py). It
    returns a `DirectOutcome`:
      - `done`: every recipient is delivered, durably. The caller answers
        250, writes its "queued" line, then calls `record(outcome)` for the
        "sent" lines and "removed"; the spool is discarded, no entry exists.
      - not `done`: some copies could not be written (a full mailbox, a
        failing disk). The envelope now has the delivered recipients final
        and the others deferred; the caller commits it to the queue as
        usual (the 250 still waits for that commit), and `record` logs only
        the "sent" lines; the queue manager delivers the rest at once (its
        fast path) and owns the message from then on.
  * Promise 1 holds: the 250 follows the fsync of every copy (done) or the
    queue commit (not done). A crash before the 250 can leave a delivered
    copy the client does not know was accepted; its retry delivers again:
    the same at-least-once window as a queue delivery's (qmgr/runner.py).
  * The plugins' delivery observers (`observers`, pigeon/hooks/events.py)
    hear an "attempt" before the copies are written, and, through
    `record`, their outcomes, as they do for the queue manager's runs.
  * `record` counts and logs like the queue manager's outcomes
    (qmgr/settle.py `log_outcome`): in the process that runs the manager,
    its counters and metrics; in a worker process, the worker's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from pigeon.delivery.local import LocalAgent
from pigeon.hooks.events import DeliveryEvent, DeliveryObservers
from pigeon.qmgr.dispatch import dispatch
from pigeon.qmgr.results import LOCAL, LogLine, apply_results
from pigeon.queue.api import MessageContent
from pigeon.queue.model import Envelope
from pigeon.routing.resolve import Router

__all__ = ["DirectDelivery", "DirectOutcome"]

#: Only the local agent serves this path: any other transport makes a
#: "no agent" decision, which sends the message to the queue (contract).
_LOCAL_ONLY = frozenset({LOCAL})
#: One request for all local recipients (dispatch's chunk is for SMTP).
_NO_CHUNKS = 1 << 30


@dataclass(slots=True)
class DirectOutcome:
    """What `DirectDelivery.deliver` did (module contract)."""

    env: Envelope
    done: bool
    #: The "sent" lines of the copies written; `record` writes them.
    logs: list[LogLine]
    now: float


class DirectDelivery:
    """Local delivery at the accept; see the module contract."""

    def __init__(
        self,
        router: Router,
        local: LocalAgent,
        record: Callable[[DirectOutcome], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.router = router  # replaced on reload (app/roles.py)
        #: The plugins told of each attempt here, and, in a worker, of its
        #: copies by `record` (qmgr/wiring.py build_direct; Qmgr.set_observers).
        self.observers = DeliveryObservers()
        self._local = local
        self.record = record
        self._clock = clock

    async def deliver(self, env: Envelope, content: MessageContent | None) -> DirectOutcome | None:
        if content is None:
            return None
        for rcpt in env.recipients:
            notify = rcpt.params.notify
            if notify is not None and "SUCCESS" in notify:
                return None
        given = env.recipients
        # dispatch() records its own decisions on the recipients: give it
        # copies, so a message this path refuses goes to the queue untouched.
        env.recipients = [replace(r) for r in given]
        plan = dispatch(
            env,
            self.router,
            content,
            chunk=_NO_CHUNKS,
            transports=_LOCAL_ONLY,
            now=self._clock(),
        )
        if plan.logs or len(plan.groups) != 1 or plan.groups[0].nexthop.transport != LOCAL:
            env.recipients = given
            return None
        group = plan.groups[0]
        if self.observers.wants("attempt"):  # as the manager's runs do (qmgr/attempt.py)
            to = tuple(r.address for r in group.recipients)
            hop = str(group.nexthop)
            attempt = DeliveryEvent(
                "attempt", env.queue_id, env.sender, to, hop, time=self._clock()
            )
            self.observers.emit(attempt)
        results = await self._local.deliver(group.request)
        now = self._clock()
        logs: list[LogLine] = []
        apply_results(env.queue_id, group.nexthop, group.recipients, results, logs, now=now)
        done = all(r.final for r in env.recipients)
        if not done:  # only the copies written are logged; the queue does the rest
            logs = [line for line in logs if line[0].get("status") == "sent"]
        return DirectOutcome(env, done, logs, now)
