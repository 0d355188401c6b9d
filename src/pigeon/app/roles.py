"""Process roles, built by factories: what one pigeon process is made of.

    role = full_role(config)                       # one process, or the main one of several
    role = acceptor_role(config, trigger_fd=w)     # a worker process (config `workers` > 1)

Contract:
  * A `ProcessRole` is the set of parts one process owns, wired, not yet
    started; the lifecycle (app/lifecycle.py) starts, reloads and stops any
    role the same way, going by which parts it has.
  * "full": the store (opened as the queue's owner), the SMTP service on its
    listeners, the POP3 service (readers/pop3_service.py) and the IMAP
    server (readers/imap_service.py) on the same `Listeners`
    (`net.listener.ByRole`: one drain, one hand-over at `pigeon restart`;
    the IMAP roles "imap" and "imaps" counted apart under `[imap]`'s
    connection limits, an idle mail client taking no SMTP slot; the readers
    run where local delivery runs, so IDLE is woken in-process), the queue
    manager and delivery agents, and the administration
    side (control socket, PID file, submit socket, metrics: started by the
    lifecycle because the manager exists). Accepted mail goes straight to
    the manager (`submit`). With worker processes, `wake_fd` is the read end
    of their trigger pipe: a byte there nudges the manager.
  * Every role has its `report_sink` (app/reportjob.py
    `build_report_sink`), built before the receive policy and the delivery
    agents, for the DMARC check and the SMTP client; the "full" role also
    has the `reports` job when `[reports]` is on.
  * "acceptor": a worker process: the store (not as its owner), the SMTP
    service on the listeners shared by every process, and nothing that
    delivers or changes queue state. Each accepted message writes one byte
    to `trigger_fd` (the main process's manager scans then, like Postfix's
    pickup trigger); ETRN is passed to the main process's queue manager
    over the control socket, the only owner of queue state.
  * Factories raise `TlsError` for a broken certificate and `ConfigErrors`
    for a `[[plugins]]` entry that cannot be loaded (nothing is listening
    yet); the lifecycle maps both to exit status 78. Every role loads the
    plugins itself (each worker has its own instances); the "full" role's
    manager tells them of delivery events. `[[webhooks]]` likewise: each
    role has its `Webhooks` (pigeon/webhooks/service.py), told of received
    mail by the SMTP side and of delivery events as the plugins are, writing
    to the one outbox of the data directory; the "full" role sends.
  * Factories raise `ConfigError` for a DKIM key that cannot be read
    (`wiring.outbound_signing`: 78 as well).
  * `ProcessRole.apply(plan, tls, plugins, signing)` is how a reload reaches the
    parts: new receive policy (with `plugins`, loaded afresh by
    `load_plugins` before: a plugin that does not load refuses the reload)
    and SMTP settings, listeners compared and changed and their connection
    limits, routing and delivery observers for the manager, the free-space
    reserve; each part is told through its own method, nothing writes into
    another object's fields.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pigeon.admin.client import ControlClient, ControlUnavailable, RemoteError
from pigeon.app import wiring
from pigeon.app.reload import ReloadPlan
from pigeon.app.reportjob import ReportJob, build_report_sink
from pigeon.auth.login import LoginGate
from pigeon.auth.service import AuthService
from pigeon.config.schema import Config
from pigeon.delivery.api import DeliveryAgent
from pigeon.delivery.wiring import build_agents
from pigeon.hooks.api import Submit
from pigeon.hooks.load import LoadedPlugin, delivery_observers
from pigeon.net.listener import ByRole, ConnectionLimits, Listener, Listeners
from pigeon.net.signmail import OutboundSigning, outbound_signing
from pigeon.net.smtp_service import (
    SMTP_ROLES,
    SmtpService,
    SmtpSettings,
    connection_limits,
    smtp_listeners,
)
from pigeon.net.tls import TlsProvider
from pigeon.obs.maillog import MailLog
from pigeon.obs.metrics import Metrics
from pigeon.policy.pipeline import ReceivePipeline
from pigeon.qmgr import DirectDelivery, Qmgr, build_direct
from pigeon.readers.imap_service import (
    IMAP_ROLES,
    ImapService,
    ImapSettings,
    imap_limits,
    imap_listeners,
)
from pigeon.readers.login import ReaderLogins
from pigeon.readers.pop3_service import POP3_ROLES, Pop3Service, Pop3ServiceSettings, pop3_listeners
from pigeon.reports.records import NullSink, ReportSink
from pigeon.reports.store import StoreSink
from pigeon.routing.resolve import Router
from pigeon.signing.signer import DkimSigner
from pigeon.store.factory import AnyQueueStore, queue_store
from pigeon.webhooks.service import Webhooks, build_webhooks

__all__ = ["ProcessRole", "ROLE_FACTORIES", "acceptor_role", "full_role"]

log = logging.getLogger("pigeon")

#: Seconds a worker waits for the main process to answer an ETRN flush.
ETRN_TIMEOUT = 30.0


@dataclass
class ProcessRole:
    """The parts of one process (see the module contract)."""

    name: Literal["full", "acceptor"]
    config: Config
    store: AnyQueueStore
    tls: TlsProvider
    auth: AuthService
    maillog: MailLog
    metrics: Metrics
    router: Router
    policy: ReceivePipeline
    smtp: SmtpService
    listeners: Listeners
    manager: Qmgr | None = None  # "full" only
    agents: Mapping[str, DeliveryAgent] = field(default_factory=dict)
    wake_fd: int | None = None  # "full" with workers: their trigger pipe
    direct: DirectDelivery | None = None  # local delivery at the accept (qmgr/direct.py)
    plugins: list[LoadedPlugin] = field(default_factory=list)
    submit: Submit | None = None  # what a plugin's context queues with
    #: Where this process's DMARC check and SMTP client put their report
    #: records (app/reportjob.py `build_report_sink`; closed by the lifecycle).
    report_sink: ReportSink = field(default_factory=NullSink)
    reports: ReportJob | None = None  # "full" with [reports] on: the periodic job
    signing: OutboundSigning | None = None  # DKIM signing ([dkim]; net/signmail.py)
    pop3: Pop3Service | None = None  # "full" only: the POP3 server on `listeners`
    imap: ImapService | None = None  # "full" only: the IMAP server on `listeners`
    #: [[webhooks]] (pigeon/webhooks/service.py), or None: every role writes
    #: events to the outbox; the "full" role's lifecycle runs the sender.
    webhooks: Webhooks | None = None

    def served(self, config: Config) -> list[Listener]:
        """Every listener of this role: SMTP's, and in the "full" role the readers'."""
        return _served(config, readers=self.pop3 is not None or self.imap is not None)

    @property
    def owns_queue(self) -> bool:
        """Opens the store as its owner, runs the manager and the administration side."""
        return self.manager is not None

    def load_plugins(self, config: Config) -> list[LoadedPlugin]:
        """The `[[plugins]]` of `config`, imported afresh; ConfigErrors when one fails."""
        return wiring.plugins(config, self.submit)

    async def apply(
        self,
        plan: ReloadPlan,
        tls: TlsProvider,
        plugins: list[LoadedPlugin] | None = None,
        signing: OutboundSigning | None = None,
    ) -> list[str]:
        """Put `plan.live` in force for new sessions and deliveries; the returned
        warnings say which new listeners could not be bound. (With sockets shared
        by workers the plan keeps the listener addresses as they run, so only the
        connection limits change.) `plugins` (None: keep the running ones) are
        put in force even when the configuration is unchanged: their code may
        have changed. `signing` is the DKIM signing of `plan.live`, its keys
        read again (a new selector is put in force by a reload)."""
        live = plan.live
        self.signing = signing
        self.tls = tls
        warnings: list[str] = []
        if plugins is not None:
            self.plugins = plugins
            _observe(plugins, self.manager, self.direct, self.webhooks)
        if plan.status == "applied" or plugins is not None:
            # [srs] is restart-only: the new router keeps the running codec.
            if plan.status == "applied":
                self.router = Router(live, srs=self.router.srs)
            self.policy = wiring.receive_policy(
                live, self.router, self.policy, plugins=self.plugins
            )
        if plan.status == "applied":
            if self.manager is not None:
                self.manager.set_router(self.router)
            if self.direct is not None:
                self.direct.router = self.router
            # The reserve follows limits.message_size (queue/space.py Rule 1).
            self.store.space.configure(
                min_free=live.queue.min_free, message_size=live.limits.message_size
            )
            warnings = await self.listeners.reconfigure(
                self.served(live), _limits(live, readers=self.imap is not None)
            )
            self.config = live
        self.smtp.apply(
            SmtpSettings.build(self.config, self.policy, tls, auth=True, signing=self.signing)
        )
        if self.pop3 is not None:
            self.pop3.apply(Pop3ServiceSettings.build(self.config, tls))
        if self.imap is not None:
            self.imap.apply(ImapSettings.build(self.config, tls))
        return warnings


def _served(config: Config, *, readers: bool) -> list[Listener]:
    """SMTP's listeners, and with `readers` (the full role) POP3's and IMAP's."""
    out = smtp_listeners(config, tls=True)
    if readers:
        out += pop3_listeners(config) + imap_listeners(config)
    return out


def _limits(config: Config, *, readers: bool) -> ConnectionLimits:
    """`[limits]`'s connection limits; with `readers`, the IMAP roles counted
    apart under `[imap]`'s (net/listener.py, ListenerRole.group)."""
    limits = connection_limits(config)
    if not readers:
        return limits
    return ConnectionLimits(limits.total, limits.per_ip, {"imap": imap_limits(config)})


def _receiving(
    name: Literal["full", "acceptor"],
    config: Config,
    store: AnyQueueStore,
    router: Router,
    maillog: MailLog,
    metrics: Metrics,
    *,
    on_queued: Any,
    on_etrn: Any,
    manager: Qmgr | None = None,
    agents: Mapping[str, DeliveryAgent] | None = None,
    wake_fd: int | None = None,
    direct: DirectDelivery | None = None,
    report_sink: ReportSink | None = None,
    readers: bool = False,
) -> ProcessRole:
    """The parts every role has: TLS, accounts, the receive policy, the SMTP service
    on its listeners, the report sink; with `readers`, the POP3 service on the
    same listeners (one set of connection limits, one drain, one restart)."""
    tls = TlsProvider.create(config)  # TlsError: see the contract
    log.info("TLS: %s", tls.describe())
    auth = wiring.auth_service(config)
    role: ProcessRole | None = None  # made below; read at each submit, after reloads too

    def current_signer() -> DkimSigner | None:
        signing = role.signing if role is not None else None
        return signing.signer if signing is not None else None

    submit = wiring.queue_submitter(store, on_queued, current_signer)
    if manager is not None:  # our bounces and delay reports are DKIM-signed too
        manager.set_notice_signer(wiring.notice_signer(current_signer))
    plugins = wiring.plugins(config, submit)  # ConfigErrors: see the contract
    webhooks = build_webhooks(config)  # ConfigError: an unreadable secret_file
    _observe(plugins, manager, direct, webhooks)
    policy = wiring.receive_policy(
        config, router, space=store.space, plugins=plugins, reports=report_sink
    )
    signing = outbound_signing(config)  # ConfigError: see the contract
    smtp = SmtpService(
        SmtpSettings.build(config, policy, tls, auth=True, signing=signing),
        store=store,
        maillog=maillog,
        on_queued=on_queued,
        logins=LoginGate(auth, maillog),
        metrics=metrics,
        on_etrn=on_etrn,
        direct=direct,
        on_received=webhooks.received if webhooks is not None else None,
    )
    services: dict[str, Any] = {role.name: smtp for role in SMTP_ROLES}
    pop3 = imap = None
    if readers:  # beside local delivery: IMAP IDLE hears of new mail in-process
        pop3 = Pop3Service(
            Pop3ServiceSettings.build(config, tls),
            ReaderLogins(auth, maillog, protocol="pop3"),
        )
        services.update({role.name: pop3 for role in POP3_ROLES})
        imap = wiring.imap_service(config, tls, auth, maillog)
        services.update({role.name: imap for role in IMAP_ROLES})
    listeners = Listeners(
        ByRole(services),
        _served(config, readers=readers),
        limits=_limits(config, readers=readers),
        metrics=metrics,
    )
    role = ProcessRole(
        name,
        config,
        store,
        tls,
        auth,
        maillog,
        metrics,
        router,
        policy,
        smtp,
        listeners,
        manager,
        dict(agents or {}),
        wake_fd,
        direct,
        plugins,
        submit,
        report_sink if report_sink is not None else NullSink(),
        signing=signing,
        pop3=pop3,
        imap=imap,
        webhooks=webhooks,
    )
    return role


def _observe(
    plugins: list[LoadedPlugin],
    manager: Qmgr | None,
    direct: DirectDelivery | None,
    webhooks: Webhooks | None,
) -> None:
    """The plugins and the webhooks hear delivery events: from the manager (its
    deliveries and the copies written at the accept in this process), or, in
    a worker, from its own copies written at the accept."""
    observers = delivery_observers(plugins, [webhooks] if webhooks is not None else [])
    if manager is not None:
        manager.set_observers(observers)
    elif direct is not None:
        direct.observers = observers


def _store(config: Config) -> AnyQueueStore:
    store = queue_store(config)
    # The free-space reserve of the SMTP side (queue/space.py Rule 1).
    store.space.configure(min_free=config.queue.min_free, message_size=config.limits.message_size)
    return store


def full_role(config: Config, *, wake_fd: int | None = None) -> ProcessRole:
    """One process, or the main one of several: receives, delivers, administers."""
    store = _store(config)
    router = wiring.router(config)
    maillog = MailLog()
    metrics = Metrics()
    report_sink = build_report_sink(config, config.data_dir)
    agents = build_agents(config, wiring.resolver(config), sink=report_sink)
    manager = wiring.queue_manager(config, store, router, maillog, agents, metrics=metrics)

    async def on_etrn(node: str) -> int:
        return await wiring.etrn_flush(manager.flush, node)

    role = _receiving(
        "full",
        config,
        store,
        router,
        maillog,
        metrics,
        on_queued=manager.submit,
        on_etrn=on_etrn,
        manager=manager,
        agents=agents,
        wake_fd=wake_fd,
        direct=manager.direct,
        report_sink=report_sink,
        readers=True,
    )
    if isinstance(report_sink, StoreSink) and role.submit is not None:
        resolver = wiring.resolver(config)
        role.reports = ReportJob(
            config,
            report_sink,
            resolver,
            role.submit,
            post=wiring.report_poster(config, resolver),
        )
    return role


def acceptor_role(config: Config, *, trigger_fd: int) -> ProcessRole:
    """A worker process: accepts and commits mail; the main process delivers it."""
    control = config.control_socket

    async def on_etrn(node: str) -> int:
        return await wiring.etrn_flush(lambda domain: _flush_in_main(control, domain), node)

    router, maillog, metrics = wiring.router(config), MailLog(), Metrics()
    return _receiving(
        "acceptor",
        config,
        _store(config),
        router,
        maillog,
        metrics,
        on_queued=_trigger(trigger_fd),
        on_etrn=on_etrn,
        # Every worker delivers the local mail it accepts (issue 16).
        direct=build_direct(config, router, maillog, metrics),
        # Its DMARC check's records go to the shared file; the main process reports.
        report_sink=build_report_sink(config, config.data_dir),
    )


#: The process roles by name, each built by its factory.
ROLE_FACTORIES: dict[str, Callable[..., ProcessRole]] = {
    "full": full_role,
    "acceptor": acceptor_role,
}


def _trigger(fd: int) -> Any:
    def pull(_envelope: object) -> None:
        try:
            os.write(fd, b"!")
        except BlockingIOError:
            pass  # the pipe is full: the main process is already due to scan
        except OSError:
            pass  # the main process is gone; its successor will recover the queue

    return pull


async def _flush_in_main(control: Path, domain: str) -> dict[str, Any]:
    """The main process's queue manager flushes `domain` (the control socket's
    "flush"); a main process that cannot be asked flushes nothing (logged)."""

    def call() -> dict[str, Any]:
        result: dict[str, Any] = ControlClient(control, timeout=ETRN_TIMEOUT).call(
            "flush", domain=domain
        )
        return result

    try:
        return await asyncio.to_thread(call)
    except (ControlUnavailable, RemoteError) as exc:
        log.warning("ETRN %s: the main process could not be asked to flush: %s", domain, exc)
        return {"done": []}
