"""The composition root's building blocks: one small function per part, from a `Config`.

Contract:
  * These are the only places where the parts named here are constructed
    from the configuration (CONTRIBUTING.md, rule 11); the role factories
    (app/roles.py) call them, and a reload (app/lifecycle.py) calls
    `receive_policy` again for the new configuration.
  * `queue_manager(...)` builds the queue manager with every `[queue]` and
    `[delivery]` scheduling setting. It sits here, above delivery, so that
    delivery never imports the manager; it is the one line to change when
    the manager moves (pigeon.qmgr's factory).
  * `receive_policy(config, router, previous)` builds the receive-time
    decisions for one configuration; the new-mailbox counts of `previous`
    (the policy it replaces at a reload) carry over.
  * `resolver(config)` is the one DNS resolver of the process (the dnspython
    stub over `[delivery] dns_servers`, bounded by `dns_timeout`), shared by
    every part that looks names up.
  * `auth_service(config)` builds the account store and failed-login limiter;
    the store is opened by the lifecycle, not here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pigeon.auth.accounts import AccountStore
from pigeon.auth.ratelimit import FailureLimiter, LimitSettings
from pigeon.auth.service import AuthService
from pigeon.config.schema import Config
from pigeon.delivery.api import DeliveryAgent
from pigeon.dns.api import Resolver
from pigeon.dns.stub import StubResolver
from pigeon.policy.recipients import RecipientPolicy
from pigeon.queue.manager import NEXTHOP_PROBE, QueueManager
from pigeon.queue.store import QueueStore
from pigeon.routing.resolve import Router

__all__ = ["auth_service", "etrn_flush", "queue_manager", "receive_policy", "resolver"]


def resolver(config: Config) -> Resolver:
    return StubResolver.from_config(config.delivery)


def receive_policy(
    config: Config, router: Router, previous: RecipientPolicy | None = None
) -> RecipientPolicy:
    carried = previous.new_mailboxes if previous is not None else None
    return RecipientPolicy(config, router, new_mailboxes=carried)


def auth_service(config: Config) -> AuthService:
    a = config.auth
    limiter = FailureLimiter(
        LimitSettings(
            slow_after=a.slow_after,
            delay=a.failure_delay,
            max_failures=a.max_failures,
            window=a.failure_window,
            lockout=a.lockout,
        )
    )
    return AuthService(AccountStore.in_data_dir(config.data_dir), limiter)


def queue_manager(
    config: Config,
    store: QueueStore,
    router: Router,
    maillog: Any,
    agents: Mapping[str, DeliveryAgent],
    *,
    metrics: Any = None,
) -> QueueManager:
    q, d = config.queue, config.delivery
    return QueueManager(
        store,
        router,
        hostname=config.hostname,
        maillog=maillog,
        agents=agents,
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
        metrics=metrics,
    )


async def etrn_flush(flush: Callable[[str], Awaitable[dict[str, Any]]], node: str) -> int:
    """ETRN node -> how many deferred messages were made due, by `flush(domain)`
    (the queue manager's, or the main process's over the control socket).
    RFC 1985 §5: "@domain" also covers the subdomains."""
    if node.startswith("@"):
        base = node[1:]
        return len((await flush(base))["done"]) + len((await flush("." + base))["done"])
    return len((await flush(node))["done"])
