"""pigeon.qmgr: the queue manager, split the way Postfix splits qmgr.

The only code that changes queue state (CONTRIBUTING.md, rule 8). It sits
above the queue storage (pigeon.queue), routing and the delivery agents,
and below the control socket and the composition root (docs/architecture.md,
the layers). Modules, each with its contract:

    settings     QmgrSettings: every number it runs by, from [queue]/[delivery]
    scheduler    what may start, when to wake, storage back-off, sweep: pure
    timing       backoff, expiry, delay warnings: pure rules of time
    destinations per-next-hop concurrency and dead destinations: pure
    waiting      mail waiting for a next hop to come back: pure
    dispatch     envelope -> requests by next hop (aliases, duplicates): pure
    results      results -> recipient statuses, log lines, the conclusion: pure
    notify       which reports (DSNs) a message owes, and enqueueing them
    bounce       the RFC 3464 report itself
    attempt      one delivery run: dispatch, agents, results, settle
    direct       local mail written into its Maildirs before the 250, no entry
    inflight     the deliveries in progress, and how a stop abandons them
    settle       durable outcomes, storage retry rounds, requeue, sweep
    operator     hold, release, delete, bounce, requeue, flush
    runner       Qmgr: the asyncio loop, the fast path, the scan
    scan         the scan's worker-thread part: due() + claim(), or claim_due()
    leases       a shared queue's claims renewed, dead nodes' claims released
    clusterlimit per-destination slots across the nodes of a shared queue
    wiring       build_qmgr(config, store, router, agents, maillog, metrics), build_direct
    ports        the interfaces it is given (store faces, mail log, metrics)
"""

from pigeon.qmgr.direct import DirectDelivery
from pigeon.qmgr.operator import ActionResult
from pigeon.qmgr.runner import Qmgr
from pigeon.qmgr.settings import QmgrSettings
from pigeon.qmgr.wiring import build_direct, build_qmgr

__all__ = ["ActionResult", "DirectDelivery", "Qmgr", "QmgrSettings", "build_direct", "build_qmgr"]
