"""One delivery run of one message: dispatch, the agents, the results, the conclusion.

Contract:
  * `Attempts.deliver(envelope)` runs one delivery attempt of a message the
    manager owns (it is 'active'): `dispatch()` (qmgr/dispatch.py) turns its
    pending recipients into requests by next hop; each request goes to the
    agent of its transport (pigeon/delivery/api.py), the requests of one
    message concurrently; the results are applied (qmgr/results.py); the
    run is concluded and its `Settlement` made durable (qmgr/settle.py).
  * Destinations (qmgr/destinations.py): a request for a remote next hop
    holds one of its `destination_concurrency` slots while its agent runs.
    A dead destination (Rule 6) gets no attempt: its recipients are deferred
    4.4.1 "delivery temporarily suspended: <last failure>", and the message
    waits for the hop (qmgr/waiting.py Rule 1). The results of a request
    judge its destination (a peer reached, or not), unless its agent raised:
    that says nothing about the next hop (the message's own problem, or our
    bug), so it never kills a destination for other mail.
  * A shared queue adds a cluster-wide slot per destination
    (`cluster`, qmgr/clusterlimit.py), taken after the node's own slot and
    the dead-destination check, held while the agent runs.
  * The local transport (Maildir, delivery/local.py) takes no destination
    slot and judges no destination: the agent group-commits every Maildir
    write of the moment, and its failures are our storage's, not a next
    hop's. A deferral its storage caused brings the message back after the
    storage back-off (qmgr/scheduler.py), not counted as an attempt.
  * An agent that raises: every recipient of its request is deferred 4.0.0,
    and the traceback goes to our log only (CONTRIBUTING.md, rule 6).
  * Each request handed to an agent is an "attempt" event for the plugins
    that hear it (`observers`, pigeon/hooks/events.py), started before the
    agent runs and never waited for.
  * Every run, its stage and its agent calls are recorded in `inflight`
    (qmgr/inflight.py), so that a stop can say what it abandons.
  * `finish(envelope, logs)` concludes a run (also the operator's bounce):
    expiry, the next attempt, the reports owed (qmgr/notify.py, reading the
    original through `store.content()`), then durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from pigeon.delivery.api import DeliveryAgent, RecipientResult
from pigeon.delivery.local import MailboxStorage
from pigeon.hooks.events import DeliveryEvent, DeliveryObservers
from pigeon.qmgr.clusterlimit import ClusterLimit
from pigeon.qmgr.dispatch import Group, dispatch
from pigeon.qmgr.inflight import InFlight, Run
from pigeon.qmgr.notify import plan_notices
from pigeon.qmgr.ports import Clock, ManagerStore, Rng
from pigeon.qmgr.results import (
    LOCAL,
    Applied,
    LogLine,
    Settlement,
    agent_failed,
    apply_results,
    conclude,
    defer_all,
)
from pigeon.qmgr.scheduler import Scheduler
from pigeon.qmgr.settings import QmgrSettings
from pigeon.qmgr.settle import Journal
from pigeon.queue.api import MessageContent
from pigeon.queue.model import Envelope
from pigeon.routing.resolve import Router
from pigeon.vocab import Nexthop

__all__ = ["Attempts"]

log = logging.getLogger("pigeon.queue")


class Attempts:
    """Delivery runs; see the module contract."""

    def __init__(
        self,
        *,
        store: ManagerStore,
        router: Router,
        agents: Mapping[str, DeliveryAgent],
        sched: Scheduler,
        journal: Journal,
        mailboxes: MailboxStorage,
        settings: QmgrSettings,
        clock: Clock,
        rng: Rng,
        wake: Callable[[], None],
    ) -> None:
        self.router = router  # replaced on reload (Qmgr.set_router)
        self._store = store
        self._agents = agents
        self._sched = sched
        self._journal = journal
        self._mailboxes = mailboxes
        self._settings = settings
        self._clock = clock
        self._rng = rng
        self._wake = wake
        self.inflight = InFlight()  # what a stop abandons (qmgr/inflight.py)
        #: Plugins told of each request handed to an agent (Qmgr.set_observers).
        self.observers = DeliveryObservers()
        #: The cluster-wide destination slots of a shared queue (runner.py), else None.
        self.cluster: ClusterLimit | None = None
        self._slots: asyncio.Condition | None = None  # created on the running loop
        self._slots_loop: asyncio.AbstractEventLoop | None = None

    async def deliver(self, env: Envelope) -> None:
        """One delivery run of `env` (see the module contract)."""
        with self.inflight.run(env) as run:
            content = self._store.content(env.queue_id)
            plan = dispatch(
                env,
                self.router,
                content,
                chunk=self._settings.destination_recipients,
                transports=self._agents,
                now=self._clock(),
            )
            logs = plan.logs
            storage_fault = False
            if len(plan.groups) == 1:  # the common case: no task group
                storage_fault = await self._run(env, plan.groups[0], logs, run)
            elif plan.groups:
                async with asyncio.TaskGroup() as tg:
                    tasks = [tg.create_task(self._run(env, g, logs, run)) for g in plan.groups]
                storage_fault = any(t.result() for t in tasks)
            run.recording = True
            await self.finish(env, logs, storage_retry=storage_fault, content=content)

    async def finish(
        self,
        env: Envelope,
        logs: list[LogLine],
        *,
        storage_retry: bool = False,
        content: MessageContent | None = None,
    ) -> None:
        """Conclude one delivery run and make it durable (module contract).

        `storage_retry`: a recipient was deferred because our own storage
        failed: the next attempt comes after the short storage back-off.
        `content`: the message's content handle, when the caller has it.
        """
        now = self._clock()
        retry_at = None
        if storage_retry:
            retry_at = self._sched.mailbox_retry_at(now, self._mailboxes.health.since)
        s = self._settings
        done, when = conclude(
            env, logs, now=now, settings=s, rng=self._rng, storage_retry_at=retry_at
        )
        plan = plan_notices(
            env,
            done=done,
            now=now,
            reporting_mta=s.hostname,
            postmaster=self.router.canonical("postmaster"),
            content=content if content is not None else self._store.content(env.queue_id),
            delay_warning=s.delay_warning,
            max_lifetime=s.max_lifetime,
        )
        await self._journal.settle(Settlement(env, logs, plan, done, when, now))

    # --- one request -------------------------------------------------------------------

    async def _run(self, env: Envelope, group: Group, logs: list[LogLine], run: Run) -> bool:
        """Deliver one group; True when our storage failed a recipient."""
        nh = group.nexthop
        if nh.transport == LOCAL:
            applied, _ = await self._attempt(env, group, logs, run)
            return applied.storage_fault
        cond = self._destination_slots()
        dests, acquired = self._sched.dests, False
        try:
            async with cond:
                await cond.wait_for(lambda: dests.acquire(nh))
                acquired = True
            if dests.is_dead(nh, self._clock()):
                reason = f"delivery temporarily suspended: {dests.dead_reason(nh)}"
                defer_all(group.recipients, "4.4.1", reason, nh.transport, logs, now=self._clock())
                self._sched.waits_for(nh, env.queue_id)  # waiting.py Rule 1
                return False
            shared = self.cluster.hold(str(nh)) if self.cluster else contextlib.nullcontext()
            async with shared:
                applied, raised = await self._attempt(env, group, logs, run)
            if not raised:
                reason = applied.first_failure
                dests.record(nh, self._clock(), reached=applied.reached, reason=reason)
            if applied.waiting:  # waiting.py Rules 1, 2
                self._sched.waits_for(nh, env.queue_id)
            if applied.delivered:
                self._hop_is_back(nh, env.queue_id)
            return applied.storage_fault
        finally:
            if acquired:
                async with cond:
                    dests.release(nh)
                    cond.notify_all()

    async def _attempt(
        self, env: Envelope, group: Group, logs: list[LogLine], run: Run
    ) -> tuple[Applied, bool]:
        """The agent's attempt, its results applied; and whether the agent raised."""
        started = self._clock()
        if self.observers.wants("attempt"):
            addresses = tuple(r.address for r in group.recipients)
            hop, qid = str(group.nexthop), env.queue_id
            self.observers.emit(
                DeliveryEvent("attempt", qid, env.sender, addresses, hop, time=started)
            )
        with run.call(group.nexthop, (r.address for r in group.recipients)):
            results, raised = await self._call(group)
        applied = apply_results(
            env.queue_id,
            group.nexthop,
            group.recipients,
            results,
            logs,
            now=self._clock(),
            queue_wait=_wait(env, started),
        )
        return applied, raised

    async def _call(self, group: Group) -> tuple[list[RecipientResult], bool]:
        """The agent's results, and whether it raised (then they are our 4.0.0s)."""
        request = group.request
        try:
            return list(await self._agents[group.nexthop.transport].deliver(request)), False
        except Exception as e:
            log.warning(
                "queue_id=%s: delivery agent %s raised %r; deferring %d recipient(s)",
                request.queue_id,
                group.nexthop,
                e,
                len(group.recipients),
                exc_info=True,
            )
            return agent_failed(group.recipients, e), True

    def _destination_slots(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots, self._slots_loop = asyncio.Condition(), loop
        return self._slots

    def _hop_is_back(self, nh: Nexthop, qid: str) -> None:
        """A delivery through `nh` succeeded: retry what waits for it (waiting.py Rule 2)."""
        ids = self._sched.hop_is_back(nh, qid)
        if ids:
            log.info("next hop %s answers again: retrying %d deferred message(s) now", nh, len(ids))
            self._wake()


def _wait(env: Envelope, started: float) -> float:
    """Seconds the message waited in the queue before this attempt."""
    return max(0.0, started - env.received_at) if env.received_at else 0.0
