"""Composition root: configuration in, a running MTA out.

Contract:
  * This is the only place where pigeon's parts are created and wired
    together (CONTRIBUTING.md, rule 11): store -> router/policy -> queue manager -> SMTP
    server. No module registers itself at import time.
  * `run(config)` blocks until SIGTERM/SIGINT, then drains: listeners answer
    421 to newcomers, sessions in progress finish (up to
    `timeouts.shutdown_grace`), the queue manager finishes in-flight
    deliveries, the store closes. Returns the process exit status.
  * uvloop is used when it is installed; plain asyncio otherwise.
  * data_dir is created (when missing) and checked before anything is
    built: not a directory, not creatable or not writable is exit 73
    (EX_CANTCREAT), logged once; never a TLS error's 78.
  * TLS and AUTH (issue 4): the certificate is checked (or a self-signed
    one made) in `build`, before anything listens; a broken one is
    `TlsError` naming the file, and `run` exits 78 (EX_CONFIG). The account
    store `<data_dir>/accounts.db` is opened in `serve`. SIGHUP reloads the
    certificate files without dropping sessions (pigeon.net.tls).
  * Reload (pigeon.reload): SIGHUP and the control socket's "reload"
    operation (`pigeon reload`) run the same `Pigeon.reload()`, one at a
    time; with worker processes the main process passes SIGHUP on to them.
  * The PID file (pigeon.admin.pidfile) is written once every listener is
    bound and removed at exit. Valid but risky settings
    (pigeon.config.risks: an open relay...) are logged as warnings at
    start-up.
  * The queue store is opened first, as its owner (queue/store.py): a
    damaged queue.db, or a `pigeon queue rebuild` in progress, is one log
    line and exit 73 (EX_CANTCREAT) before anything listens. A missing or
    empty queue.db is rebuilt from the message files by the recovery.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

from pigeon.admin.control import ControlError
from pigeon.admin.pidfile import PidFileError
from pigeon.admin.wiring import AdminHandle, start_admin
from pigeon.auth.accounts import AccountError, AccountStore
from pigeon.auth.login import LoginGate
from pigeon.auth.ratelimit import FailureLimiter, LimitSettings
from pigeon.auth.service import AuthService
from pigeon.config.load import session_config
from pigeon.config.risks import risks
from pigeon.config.schema import Config
from pigeon.delivery.wiring import build_agents, build_manager, close_agents
from pigeon.net.listener import ListenError, SmtpServer
from pigeon.net.services import ReceiveServices
from pigeon.net.tls import TlsError, TlsProvider
from pigeon.obs.maillog import MailLog
from pigeon.obs.metrics import Metrics
from pigeon.policy.build import PolicyDeps, build_pipeline
from pigeon.privileges import PrivilegeError, drop, make_data_dir, tighten_umask
from pigeon.queue.manager import QueueManager
from pigeon.queue.store import QueueStore, StoreError
from pigeon.reload import Reloader, ReloadOutcome
from pigeon.routing.resolve import Router

log = logging.getLogger("pigeon")

EX_OK = 0
EX_UNAVAILABLE = 69  # sysexits.h: a listener could not be bound
EX_CANTCREAT = 73  # sysexits.h: the data directory is unusable
EX_NOPERM = 77  # sysexits.h: could not switch to the configured user
EX_CONFIG = 78  # sysexits.h: a broken TLS certificate or key


@dataclass
class Pigeon:
    """The wired application; tests can build one and drive it in-process."""

    config: Config
    store: QueueStore
    manager: QueueManager
    server: SmtpServer
    tls: TlsProvider | None = None
    auth: AuthService | None = None
    agents: dict | None = None
    maillog: MailLog | None = None
    metrics: Metrics | None = None

    #: Loads the configuration again (same file, same flags) for a reload;
    #: None: a reload only re-reads the TLS certificate files.
    reload_config: Callable[[], Config] | None = None
    #: Called at the start of every reload (worker processes: pass SIGHUP on).
    on_reload: Callable[[], None] | None = None

    _admin: AdminHandle | None = None
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def build(cls, config: Config) -> Pigeon:
        store = QueueStore(config.queue_dir, fsync=config.queue.fsync)
        # The free-space reserve of the SMTP side (queue/space.py Rule 1).
        store.space.configure(
            min_free=config.queue.min_free, message_size=config.limits.message_size
        )
        router = Router(config)
        # The receive checks (pigeon.policy.build); the reload rebuilds them
        # with the same deps (new-mailbox counts carry over).
        pipeline = build_pipeline(config, PolicyDeps(router, space=store.space))
        maillog = MailLog()
        agents = build_agents(config)
        metrics = Metrics()
        manager = build_manager(config, store, router, maillog, agents, metrics=metrics)
        tls = TlsProvider.create(config)  # TlsError: see the contract
        log.info("TLS: %s", tls.describe())
        limiter = FailureLimiter(LimitSettings.of(config.auth))
        auth = AuthService(AccountStore.in_data_dir(config.data_dir), limiter)
        services = ReceiveServices(
            store=store,
            pipeline=pipeline,
            maillog=maillog,
            on_queued=manager.submit,
            logins=LoginGate(auth, maillog),
            tls=tls,
            metrics=metrics,
            on_etrn=lambda node: _etrn_flush(manager, node),
            greet_pause=config.timeouts.greet_pause,
            handshake_timeout=config.tls.handshake_timeout,
        )
        server = SmtpServer(config, session_config(config), services)
        return cls(config, store, manager, server, tls, auth, agents, maillog, metrics)

    async def reload(self) -> ReloadOutcome:
        """SIGHUP or `pigeon reload`: re-read the configuration (see pigeon.reload);
        live sessions keep theirs. One reload at a time."""
        async with self._reload_lock:
            if self.on_reload is not None:
                self.on_reload()
            if self._admin is not None:
                self._admin.reloading()  # sd_notify RELOADING=1
            try:
                return await Reloader(self, self.reload_config).reload()
            finally:
                if self._admin is not None:
                    self._admin.ready()  # sd_notify READY=1 again

    async def _reload_for_operator(self) -> dict:
        return (await self.reload()).to_dict()

    async def serve(
        self, stop: asyncio.Event, *, sockets: dict | None = None, recover: bool = True
    ) -> None:
        """The whole MTA. `sockets`: listeners bound before worker processes
        were forked; `recover=False`: the queue was recovered before that."""
        make_data_dir(self.config.data_dir, self.config.user)  # PrivilegeError: a symlink
        # The owner: refuses a damaged queue.db (StoreCorrupt) and keeps
        # `pigeon queue rebuild` out while we run (queue/store.py).
        self.store.open(owner=True)
        if self.auth is not None:
            self.auth.store.open()
        try:
            # The control socket first: it refuses to start when another
            # pigeon already serves this data directory (ControlError).
            self._admin = await start_admin(
                self.config,
                self.store,
                self.manager,
                self.maillog,
                self.server.statistics,
                metrics=self.metrics,
                reload=self._reload_for_operator,
            )
            await self.server.start(sockets)
            self._admin.write_pid_file()  # before dropping root: /run may be root's
            # Everything that needs root is done: listeners bound, files open.
            drop(self.config.user, self.config.group, self.config.data_dir)
            self._admin.publish()  # the submit socket, for local users' sendmail
            async with asyncio.TaskGroup() as tg:
                manager_task = tg.create_task(self.manager.run(recover=recover))
                log.info(
                    "pigeon ready: hostname=%s domains=%s data_dir=%s",
                    self.config.hostname,
                    ",".join(sorted(self.config.domains)),
                    self.config.data_dir,
                )
                self._admin.ready()  # sd_notify READY=1 under systemd
                await stop.wait()
                log.info("shutting down")
                await self.server.drain(self.config.timeouts.shutdown_grace)
                await self.manager.stop()
                await close_agents(self.agents or {})
                if not manager_task.done():
                    manager_task.cancel()
        finally:
            await self.server.close()
            if self._admin is not None:
                await self._admin.close()
            self.store.close()
            if self.auth is not None:
                self.auth.close()

    async def serve_acceptor(self, stop: asyncio.Event, sockets: dict) -> None:
        """A worker process (config `workers` > 1): accept and queue mail on
        the shared listeners; the main process alone runs the queue manager."""
        self.store.open()
        if self.auth is not None:
            self.auth.store.open()
        try:
            await self.server.start(sockets)
            drop(self.config.user, self.config.group, self.config.data_dir)
            log.info("pigeon worker ready (pid %d)", os.getpid())
            await stop.wait()
            await self.server.drain(self.config.timeouts.shutdown_grace)
        finally:
            await self.server.close()
            self.store.close()
            if self.auth is not None:
                self.auth.close()


async def _etrn_flush(manager: QueueManager, node: str) -> int:
    """ETRN node -> how many deferred messages were made due (RFC 1985 §5:
    "@domain" also covers the subdomains)."""
    if node.startswith("@"):
        base = node[1:]
        done = (await manager.flush(base))["done"] + (await manager.flush("." + base))["done"]
    else:
        done = (await manager.flush(node))["done"]
    return len(done)


def reload_on_signal(app: Pigeon) -> Callable[[], None]:
    """The SIGHUP handler: start `app.reload()` (its outcome is logged by pigeon.reload)."""
    running: set[asyncio.Task] = set()

    def on_sighup() -> None:
        task = asyncio.ensure_future(app.reload())
        running.add(task)  # keep a reference until it is done
        task.add_done_callback(running.discard)

    return on_sighup


def _data_dir_problem(config: Config) -> str | None:
    """Why data_dir cannot hold pigeon's data (after make_data_dir), or None."""
    if not config.data_dir.is_dir():
        return "not a directory"
    if not os.access(config.data_dir, os.W_OK | os.X_OK):
        return "not writable by this user"
    return None


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(config: Config, reload_config: Callable[[], Config] | None = None) -> int:
    """Run pigeon in the foreground until SIGTERM/SIGINT.

    `reload_config` loads the configuration again (same file and flags) on
    SIGHUP or `pigeon reload`; without it a reload only re-reads the TLS
    certificate.
    """

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            app = Pigeon.build(config)
        except TlsError as exc:
            log.error("%s", exc)
            return EX_CONFIG
        app.reload_config = reload_config
        loop.add_signal_handler(signal.SIGHUP, reload_on_signal(app))
        try:
            await app.serve(stop)
        except (ListenError, ControlError, PidFileError) as exc:
            log.error("%s", exc)
            return EX_UNAVAILABLE
        except PrivilegeError as exc:
            log.error("%s", exc)
            return EX_NOPERM
        except PermissionError as exc:
            log.error("data directory %s is not usable: %s", config.data_dir, exc)
            return EX_CANTCREAT
        except AccountError as exc:
            log.error("%s", exc)
            return EX_CANTCREAT
        except StoreError as exc:  # a damaged queue.db, a rebuild running: one line
            log.error("%s", exc)
            return EX_CANTCREAT
        return EX_OK

    tighten_umask()  # queue files, Maildirs, sockets: private to pigeon's user
    log.info("pigeon starting (pid %d)", os.getpid())
    for risk in risks(config):
        log.warning("configuration: %s: %s", risk.key, risk.message)
    try:
        # Before anything writes there (the self-signed certificate, the
        # queue): an unusable data_dir is 73, never a TLS error's 78.
        make_data_dir(config.data_dir, config.user)
        problem = _data_dir_problem(config)
    except PrivilegeError as exc:
        log.error("%s", exc)
        return EX_NOPERM
    except FileExistsError:
        problem = "not a directory"
    except OSError as exc:
        problem = exc.strerror or str(exc)
    if problem is not None:
        log.error("data directory %s is not usable: %s", config.data_dir, problem)
        return EX_CANTCREAT
    if config.workers > 1:
        from pigeon.workers import run_with_workers

        return run_with_workers(config, reload_config, new_loop=_new_loop, build=Pigeon.build)
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        return runner.run(main())
