"""Building the queue manager from a configuration: `build_qmgr`.

Contract:
  * `build_qmgr(config, store, router, agents, maillog, metrics, ...)`
    returns a `Qmgr` (qmgr/runner.py) with its settings from `[queue]` and
    `[delivery]` (`QmgrSettings.from_config`), and the local Maildir agent
    (delivery/local.py, transport "local") added to `agents` (the other
    transports: smtp, lmtp, discard, built by the caller). The local agent
    and the manager share one `MailboxStorage`, so Maildir storage faults
    reach the manager's retry rounds and `pigeon status`.
  * With `[queue] local_at_accept` (the default) the manager gets a
    `DirectDelivery` (qmgr/direct.py) on the same local agent: `qmgr.direct`,
    for the SMTP side. `build_direct` makes one for a worker process, which
    has no manager.
  * `clock` and `rng` may be injected (tests); they default to the wall
    clock and a fresh `random.Random`.
  * Called only from the composition root (pigeon.app and its lifecycle).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from pigeon.config.schema import Config
from pigeon.delivery.api import DeliveryAgent
from pigeon.delivery.local import LocalAgent, MailboxStorage
from pigeon.qmgr.direct import DirectDelivery, DirectOutcome
from pigeon.qmgr.ports import Clock, MailLog, ManagerStore, Metrics, Rng
from pigeon.qmgr.results import LOCAL
from pigeon.qmgr.runner import Qmgr
from pigeon.qmgr.settings import QmgrSettings
from pigeon.qmgr.settle import delivered_outcome, log_outcome, new_counters
from pigeon.routing.resolve import Router

__all__ = ["build_direct", "build_qmgr"]


def build_qmgr(
    config: Config,
    store: ManagerStore,
    router: Router,
    agents: Mapping[str, DeliveryAgent],
    maillog: MailLog,
    metrics: Metrics | None = None,
    *,
    clock: Clock = time.time,
    rng: Rng | None = None,
) -> Qmgr:
    """The queue manager of `config` (see the module contract)."""
    settings = QmgrSettings.from_config(config)
    mailboxes = MailboxStorage(fsync=settings.fsync)
    local = LocalAgent(mailboxes, fsync=settings.fsync, clock=clock)
    qmgr = Qmgr(
        store,
        router,
        {**agents, LOCAL: local},
        settings,
        maillog=maillog,
        clock=clock,
        rng=rng,
        metrics=metrics,
        mailboxes=mailboxes,
    )
    if config.queue.local_at_accept:
        qmgr.direct = DirectDelivery(router, local, qmgr.record_direct, clock=clock)
    return qmgr


def build_direct(
    config: Config,
    router: Router,
    maillog: MailLog,
    metrics: Metrics | None = None,
    *,
    clock: Clock = time.time,
) -> DirectDelivery | None:
    """Local delivery at the accept for a process without a queue manager (a
    worker, app/roles.py): its own Maildir agent, counters and metrics, and
    the worker's plugins told of its copies (`direct.observers`)."""
    if not config.queue.local_at_accept:
        return None
    fsync = config.queue.fsync
    local = LocalAgent(MailboxStorage(fsync=fsync), fsync=fsync, clock=clock)
    counters = new_counters()

    def record(o: DirectOutcome) -> None:
        outcome = delivered_outcome(o.env, o.logs, o.now, done=o.done)
        log_outcome(outcome, maillog, metrics, counters, direct.observers)

    direct = DirectDelivery(router, local, record, clock=clock)
    return direct
