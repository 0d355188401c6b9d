"""The queue manager's settings, as one value built from the configuration.

Contract:
  * `QmgrSettings` holds every number and switch the queue manager runs by
    (frozen; the defaults are the configuration's defaults, docs/config.md).
    `QmgrSettings.from_config(config)` maps `[queue]` and `[delivery]` onto
    it; the composition root builds it once (pigeon/qmgr/wiring.py).
  * Everything else the manager uses (store, router, agents, mail log,
    metrics, clock, random numbers) is injected, not configured.
  * Invalid values (counts below 1) raise ValueError when the value is made.
"""

from __future__ import annotations

from dataclasses import dataclass

from pigeon.config.schema import Config

__all__ = ["FRESH_LIMIT", "NEXTHOP_PROBE", "STORE_RETRY", "QmgrSettings"]

#: Seconds before the first retry after the store failed (disk full, EIO);
#: doubles while it keeps failing (qmgr/settle.py Rule 2).
STORE_RETRY = 1.0

#: At most this many seconds between probes of a next hop that mail waits
#: for (qmgr/waiting.py Rule 3); `queue.run_interval` when that is shorter.
NEXTHOP_PROBE = 30.0

#: Fresh envelopes kept in memory (qmgr/scheduler.py, the fast path); past it
#: their rows wait in the database for a scan.
FRESH_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class QmgrSettings:
    hostname: str = "localhost"  # Reporting-MTA of our reports
    fsync: bool = True  # [queue] fsync: probe files (and the Maildirs: the local agent)
    run_interval: float = 60.0  # s: the safety-net scan and sweep
    concurrency: int = 64  # messages in delivery at once (the active window)
    min_backoff: float = 300.0  # s: first retry delay; also a dead destination's time
    max_backoff: float = 4000.0  # s
    max_lifetime: float = 432000.0  # s: then what is left bounces (4.4.7)
    delay_warning: float = 14400.0  # s: 0 = no delay warnings
    destination_concurrency: int = 20  # deliveries in flight per next hop
    destination_recipients: int = 50  # recipients per request (one SMTP transaction)
    destination_failure_limit: int = 3  # failures in a row before a next hop is dead
    store_retry: float = STORE_RETRY  # s: first storage retry round after a failure
    probe_interval: float = NEXTHOP_PROBE  # s: between probes of a next hop mail waits for
    fresh_limit: int = FRESH_LIMIT  # submitted envelopes kept in memory

    def __post_init__(self) -> None:
        if self.destination_recipients < 1 or self.concurrency < 1:
            raise ValueError("concurrency and destination_recipients must be >= 1")

    @classmethod
    def from_config(cls, config: Config) -> QmgrSettings:
        q, d = config.queue, config.delivery
        return cls(
            hostname=config.hostname,
            fsync=q.fsync,
            run_interval=q.run_interval,
            concurrency=q.concurrency,
            min_backoff=q.min_backoff,
            max_backoff=q.max_backoff,
            max_lifetime=q.max_lifetime,
            delay_warning=q.delay_warning,
            destination_concurrency=d.destination_concurrency,
            destination_recipients=d.destination_recipients,
            probe_interval=min(NEXTHOP_PROBE, q.run_interval),
        )
