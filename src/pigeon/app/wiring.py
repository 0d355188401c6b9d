"""The composition root's building blocks: one small function per part, from a `Config`.

Contract:
  * These are the only places where the parts named here are constructed
    from the configuration (CONTRIBUTING.md, rule 11); the role factories
    (app/roles.py) call them, and a reload (app/lifecycle.py) calls
    `receive_policy` again for the new configuration.
  * `queue_manager(...)` builds the queue manager with every `[queue]` and
    `[delivery]` scheduling setting. It sits here, above delivery, so that
    delivery never imports the manager (pigeon.qmgr's `build_qmgr`).
  * `receive_policy(config, router, previous, space=...)` builds the
    receive pipeline for one configuration (`policy.build.build_pipeline`,
    the one place its checks are composed); the collaborators of `previous`
    (the pipeline it replaces at a reload: the new-mailbox counts, the
    queue's free-space reserve, the abuse controls' state opened here from
    `<data_dir>/abuse.db`, the resolver, the checker process of the inbound
    checks, `checker_process`) carry over, with the new router;
    `plugins` are the loaded `[[plugins]]`, whose stage methods it asks
    last. The lifecycle closes that state (`PolicyDeps.close`) when it stops
    (which also ends the checker process).
  * `plugins(config, submit)` loads the `[[plugins]]` afresh (start-up and
    every reload), or raises ConfigErrors naming the key; `queue_submitter`
    is the `submit` a plugin's context has (an auto-reply queued as a new
    entry, durable before it returns).
  * `resolver(config)` is the one DNS resolver of the process (the dnspython
    stub over `[delivery] dns_servers`, bounded by `dns_timeout`), shared by
    every part that looks names up; the receive checks get it behind the
    TTL cache (`dns.cache.CachingResolver`).
  * `router(config)` is the process's `Router` with the SRS codec of
    `[srs]` (forwarding/secrets.py: the secret is read, or made once in
    `<data_dir>/srs.secret`, here at start-up); a secret that cannot be read
    or made is a ConfigError naming the key (exit 78). A reload keeps the
    codec (`[srs]` is restart-only, app/reload.py).
  * `notice_signer(signer)` DKIM-signs the delivery reports the queue
    manager sends (qmgr/notify.py), with the keys of MAILER-DAEMON's domain
    (our hostname's) or its nearest parent's.
  * `report_poster(config, resolver)` POSTs TLS-RPT reports to an https:
    rua (delivery/httpspost.py) with `[tls_policy] ca_file` and `fetch_timeout`.
  * `auth_service(config)` builds the account store (store/factory.py:
    accounts.db, or the database a cluster shares) and failed-login limiter;
    the store is opened by the lifecycle, not here. `abuse_state(config)`
    chooses the abuse controls' counters the same way (`<data_dir>/abuse.db`
    or policy/sharedstate.py's `PgAbuseState`).
  * `imap_service(config, tls, auth, maillog)` builds the IMAP server: the
    readers' login rules over the same `AuthService` (one failed-login
    limiter for SMTP AUTH and IMAP) and the mail store over `mailbox_root`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pigeon.app.checker import CheckerSpawner
from pigeon.auth.ratelimit import FailureLimiter, LimitSettings
from pigeon.auth.service import AuthService
from pigeon.config.load import ConfigError
from pigeon.config.schema import Config, PluginConfig
from pigeon.delivery.api import DeliveryAgent
from pigeon.delivery.httpspost import post
from pigeon.dns.api import Resolver
from pigeon.dns.cache import CachingResolver
from pigeon.dns.stub import StubResolver
from pigeon.forwarding.secrets import srs_codec
from pigeon.hooks.api import PluginContext, Submit
from pigeon.hooks.load import LoadedPlugin, load_plugins, receive_checks
from pigeon.policy.abusestate import AbuseState
from pigeon.policy.build import PolicyDeps, build_pipeline
from pigeon.policy.mailauth import CheckerPool, RemoteChecks
from pigeon.policy.pipeline import ReceivePipeline
from pigeon.policy.reserve import Room
from pigeon.proto.params import MailParams
from pigeon.qmgr import Qmgr, build_qmgr
from pigeon.queue.model import Envelope, Recipient
from pigeon.readers.imap_service import ImapService, ImapSettings
from pigeon.readers.login import ReaderLogins
from pigeon.reports.records import NullSink, ReportSink
from pigeon.routing.resolve import Router
from pigeon.signing.signer import DkimSigner, SigningError
from pigeon.store.factory import AnyQueueStore, account_store, shared

__all__ = [
    "abuse_state",
    "auth_service",
    "etrn_flush",
    "imap_service",
    "notice_signer",
    "plugins",
    "queue_manager",
    "queue_submitter",
    "receive_policy",
    "report_poster",
    "resolver",
    "router",
]


log = logging.getLogger("pigeon.signing")


def router(config: Config) -> Router:
    """The router of `config`, with its SRS codec (module contract)."""
    try:
        codec = srs_codec(config)
    except (OSError, ValueError) as exc:
        key = "srs.secret_file" if config.srs.secret_file is not None else "srs.secret"
        raise ConfigError(key, f"no usable SRS secret: {exc}") from exc
    return Router(config, srs=codec)


def resolver(config: Config) -> Resolver:
    return StubResolver.from_config(config.delivery)


def receive_policy(
    config: Config,
    router: Router,
    previous: ReceivePipeline | None = None,
    *,
    space: Room | None = None,
    plugins: Sequence[LoadedPlugin] = (),
    reports: ReportSink | None = None,
) -> ReceivePipeline:
    if previous is not None:
        return build_pipeline(config, previous.deps.with_router(router), receive_checks(plugins))
    state = abuse_state(config).open()
    # The receive checks ask the same names again and again (SPF, DKIM keys,
    # DMARC records, block lists): their answers are kept for their TTL.
    deps = PolicyDeps(
        router,
        space,
        state=state,
        resolver=CachingResolver(resolver(config)),
        reports=reports if reports is not None else NullSink(),  # [reports] dmarc
        checker=checker_process(config),
    )
    return build_pipeline(config, deps, receive_checks(plugins))


def checker_process(config: Config) -> CheckerPool:
    """The checker processes of the inbound checks (app/checker.py,
    `[mail_auth] checkers` of them): started now, while pigeon may still be
    root, when they are on and run there; else (or when a reload turns them
    on) at their first message."""
    auth = config.mail_auth
    members = []
    for _ in range(auth.checkers):
        spawner = CheckerSpawner(config)
        first = spawner.spawn() if auth.enabled and auth.checker == "process" else None
        members.append(RemoteChecks(first, respawn=spawner.spawn, reap=spawner.close))
    return CheckerPool(members)


def plugins(config: Config, submit: Submit | None = None) -> list[LoadedPlugin]:
    """The `[[plugins]]` of `config`, imported afresh (ConfigErrors: see hooks/load.py),
    each with its context: the data directory, the hostname, `submit`."""

    def context(spec: PluginConfig) -> PluginContext:
        if submit is None:
            return PluginContext(spec.name, config.data_dir, config.hostname)
        return PluginContext(spec.name, config.data_dir, config.hostname, submit)

    return load_plugins(config, context)


def queue_submitter(
    store: AnyQueueStore,
    on_queued: Callable[[Envelope], object],
    signer: Callable[[], DkimSigner | None] = lambda: None,
) -> Submit:
    """`PluginContext.submit` over the store: a new queue entry through the
    same group commit as SMTP mail, handed to the manager once durable.
    The message is DKIM-signed first when `signer()` (asked at each call, so
    it follows reloads) has keys for its From: domain: the aggregate reports
    (RFC 8460 §5.3 wants TLS reports signed) and plugins' mail (an
    auto-reply) are our own mail, as `sendmail`'s is (admin/localsubmit.py);
    a SigningError is raised to the caller, nothing is queued unsigned."""

    async def submit(sender: str, recipients: Sequence[str], message: bytes) -> str:
        dkim = signer()
        if dkim is not None:  # CPU work (hashing, the signatures): off the event loop
            message = await asyncio.to_thread(_signed, dkim, message)
        eight_bit = not message.isascii()
        envelope = Envelope(
            "",
            sender,
            [Recipient(r) for r in recipients],
            params=MailParams(body="8BITMIME" if eight_bit else None),
            received_at=time.time(),
            eight_bit=eight_bit,
            protocol="local",
        )
        spool = store.new_spool(envelope)  # sets envelope.queue_id
        try:
            spool.write(message)
            envelope.size = spool.size
            await asyncio.wrap_future(store.commit_async(spool, envelope))
        except BaseException:
            spool.discard()
            raise
        on_queued(envelope)
        return envelope.queue_id

    return submit


def _signed(signer: DkimSigner, message: bytes, *, parents: bool = False) -> bytes:
    return b"".join(signer.signatures(message, parents=parents)) + message


def notice_signer(signer: Callable[[], DkimSigner | None]) -> Callable[[bytes], bytes]:
    """What signs our delivery reports (qmgr/notify.py): with the keys of their
    From domain (MAILER-DAEMON@<hostname>) or of its nearest parent that has
    keys (signing/signer.py `parents`), asked at each report so reloads
    count. A key dkimpy refuses leaves the report unsigned, logged: a
    report is never lost for want of a signature."""

    def sign(report: bytes) -> bytes:
        dkim = signer()
        if dkim is None:
            return report
        try:
            return _signed(dkim, report, parents=True)
        except SigningError as exc:
            log.warning("DKIM: a delivery report goes unsigned: %s", exc)
            return report

    return sign


def report_poster(
    config: Config, resolver: Resolver
) -> Callable[[str, bytes, str], Awaitable[None]]:
    """How a TLS-RPT report reaches an https: rua (delivery/httpspost.py):
    through `resolver`, trusting the CAs of `[tls_policy] ca_file` (else the
    system's, as the MTA-STS policy fetch), within `fetch_timeout`."""
    sts = config.tls_policy

    async def send(url: str, body: bytes, content_type: str) -> None:
        await post(
            url, body, content_type, resolver, ca_file=sts.ca_file, timeout=sts.fetch_timeout
        )

    return send


def abuse_state(config: Config) -> AbuseState:
    """The abuse controls' counters (unopened): `<data_dir>/abuse.db`, or with
    a shared store the tables every node syncs with (policy/sharedstate.py)."""
    if shared(config):
        from pigeon.policy.sharedstate import PgAbuseState

        return PgAbuseState(config.queue.store, time_unit=config.rate_limits.time_unit)
    return AbuseState.in_data_dir(config.data_dir)


def auth_service(config: Config) -> AuthService:
    limiter = FailureLimiter(LimitSettings.of(config.auth))
    return AuthService(account_store(config), limiter)


def imap_service(config: Config, tls: Any, auth: AuthService, maillog: Any) -> ImapService:
    """The IMAP server (readers/imap_service.py) over the Maildirs under `data_dir`."""
    from pigeon.mailstore.mailbox import MailStore

    return ImapService(
        ImapSettings.build(config, tls),
        logins=ReaderLogins(auth, maillog, protocol="imap"),
        store=MailStore(config.mailbox_root),
    )


def queue_manager(
    config: Config,
    store: AnyQueueStore,
    router: Router,
    maillog: Any,
    agents: Mapping[str, DeliveryAgent],
    *,
    metrics: Any = None,
) -> Qmgr:
    """The queue manager (pigeon.qmgr), with the local Maildir agent added to `agents`."""
    return build_qmgr(config, store, router, agents, maillog, metrics)


async def etrn_flush(flush: Callable[[str], Awaitable[dict[str, Any]]], node: str) -> int:
    """ETRN node -> how many deferred messages were made due, by `flush(domain)`
    (the queue manager's, or the main process's over the control socket).
    RFC 1985 §5: "@domain" also covers the subdomains."""
    if node.startswith("@"):
        base = node[1:]
        return len((await flush(base))["done"]) + len((await flush("." + base))["done"])
    return len((await flush(node))["done"])
