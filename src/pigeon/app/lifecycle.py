"""The lifecycle of one pigeon process: start-up order, signals, reload, shutdown, exit status.

    status = Lifecycle(lambda: full_role(config), config, load_config=reload).run()

Contract:
  * `Lifecycle(make_role, config, ...).run()` runs one process of any role
    (one process, the main one of several, a worker) on a fresh event loop
    (uvloop when installed) and returns its exit status. It is the ONE
    owner of signals and exit statuses, the same in both modes:
      - SIGTERM, SIGINT, and the control socket's "stop" (`pigeon stop`):
        the stop (see below), exit 0. A second SIGTERM or SIGINT during the
        stop: one log line, the log flushed, `os._exit(0)` at once. A worker
        ignores SIGINT (a Ctrl-C reaches the whole process group; the main
        process decides, and passes SIGTERM on). `forward`, given to the
        main process of several, is called with SIGTERM for each
        SIGTERM/SIGINT, and with SIGHUP at the start of every reload, so the
        workers follow.
      - SIGHUP, and the control socket's "reload" (`pigeon reload`): one
        reload at a time (`Lifecycle.reload`); its outcome is logged, and
        returned to the operator.
      - the control socket's "restart" (`pigeon restart`, app/restart.py):
        a new process takes over the listening sockets, then this one
        retires (stops accepting, lets its sessions end within the grace)
        and runs the shutdown below. A worker retires on
        `restart.RETIRE_SIGNAL` (SIGUSR2) from its main process.
      - a start-up failure: its status from app/exits.py (69, 73, 77, 78),
        logged in one line; with workers, `forward(SIGTERM)` first. Anything
        else is a bug and keeps its traceback.
  * Start-up order (`serve`), for any role: the data directory and its
    lock (the full role, app/datalock.py: `DataDirInUse`, exit 75, when
    another pigeon owns it), the store (as the queue's owner when the role
    runs the manager: a damaged queue.db or a running `pigeon queue
    rebuild` stops us here) and the account store, and the mailbox tree's
    format (the owner upgrades each older format in place; data of a newer
    format stops every role here, docs/upgrade.md; a successor started by
    `pigeon restart` opens them as a non-owner until it holds the lock);
    the control socket (refused when another pigeon
    serves this data directory) and the rest of the administration side
    (roles with a manager), the HTTP API with it (app/console.py); the listeners (bound now, or the sockets bound
    before the workers were forked); the PID file; then, every privileged
    step done, the switch to `user` (pigeon.privileges); the submit socket
    opened to local users; the queue manager; "ready" (sd_notify READY=1).
    Listeners serve the sockets they are given (`sockets`, bound before the
    workers were forked; `inherited`, net/inherit.py) or bind their own.
    A process started by `pigeon restart` (`predecessor`) whose predecessor
    still holds the lock opens the store as a worker does, serves its
    listeners at once, tells the predecessor, and only then waits for the
    lock and becomes the queue's owner (app/restart.py) before the control
    socket and the rest; asked to stop while it waits, it drains and ends.
  * Reload (`reload`): the configuration is loaded again (same file, same
    flags), the difference is planned by the pure `app.reload.plan_reload`,
    the TLS certificate files are re-read (a broken one refuses the reload),
    the `[[plugins]]` are imported afresh, changed or not (one that does not
    load refuses the reload: the running plugins stay), the DKIM keys are
    read again (`[dkim]`: one that cannot be read refuses the reload), and
    the role applies the plan to its parts (`ProcessRole.apply`).
    sd_notify RELOADING=1 / READY=1 around it. Nothing else writes into the
    running parts.
  * The stop (`shutdown`) is this one method, bounded whatever the peers
    and the disk do (docs/admin.md "Stop"):
      a. the listening sockets close at once (`Listeners.stop_accepting`);
      b. the queue manager starts nothing more and abandons every delivery
         to a next hop in progress, DNS look-ups included, at once (a
         Maildir write under way gets a moment to finish), one mail-log
         line each, "may be delivered twice" when the next hop may already
         have it (`Qmgr.abandon`, qmgr/inflight.py): the entries stay in
         the queue and are tried again after the next start;
      c. at the same time, inbound sessions get up to
         `timeouts.shutdown_grace` to finish their transaction (or, between
         two, the next one: net/smtpd.py), then the rest are answered 421
         4.3.2 and closed (`Listeners.drain`); idle outbound connections
         are dropped;
      d. the aggregate reports' job (app/reportjob.py) is cancelled and
         the webhooks' sender ends (its POSTs in flight abandoned: sent
         again after the next start) as the stop begins; `close` releases
         the listeners, the administration side (control socket, PID
         file), the store and the account store, writes the report records
         and the webhook events still pending, on every path
         out of `serve`; the default thread pool is shut down without
         waiting past the deadline, the log flushed, exit 0; the
         data-directory lock is released last, as `main` returns;
      e. the hard deadline (app/deadline.py): whatever still runs at grace
         + HARD_MARGIN (4) seconds (a thread stuck in a disk write...), one
         log line, the log flushed, `os._exit(0)`. So the process is gone
         within grace + 5 s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pigeon.admin.wiring import AdminHandle, start_admin
from pigeon.app import restart
from pigeon.app.clusterwake import directory_refresh, wake_on_new_mail
from pigeon.app.console import start_console, start_first_admin
from pigeon.app.datalock import DataDirLock
from pigeon.app.deadline import HARD_MARGIN, StopDeadline
from pigeon.app.exits import EX_OK, exit_status
from pigeon.app.handover import Predecessor
from pigeon.app.reload import ReloadOutcome, ReloadPlan, plan_reload
from pigeon.app.reportjob import close_report_sink
from pigeon.app.roles import ProcessRole
from pigeon.config.load import ConfigError
from pigeon.config.schema import Config
from pigeon.delivery.wiring import close_agents
from pigeon.mailstore.layout import open_mailboxes
from pigeon.net.inherit import ListenPlan
from pigeon.net.listener import BoundSockets
from pigeon.net.signmail import outbound_signing
from pigeon.net.tls import TlsError, TlsProvider
from pigeon.privileges import drop, make_data_dir
from pigeon.web.server import WebServer

__all__ = ["Lifecycle", "new_loop"]

log = logging.getLogger("pigeon")

#: Seconds the stop gives idle outbound connections to say QUIT.
AGENTS_CLOSE = 1.0


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


#: The signals a running pigeon handles; with workers they are blocked from
#: before the fork until each process has its handlers (app/workers.py), so a
#: SIGTERM that comes as the first worker answers does not kill a process
#: that has no handler yet.
CONTROL_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, restart.RETIRE_SIGNAL})


class Lifecycle:
    """Owns one process's role from start-up to exit (see the module contract)."""

    def __init__(
        self,
        make_role: Callable[[], ProcessRole],
        config: Config,
        *,
        load_config: Callable[[], Config] | None = None,
        sockets: BoundSockets | None = None,
        recover: bool = True,
        forward: Callable[[int], None] | None = None,
        ignore_sigint: bool = False,
        lock: DataDirLock | None = None,
        inherited: ListenPlan | None = None,
        predecessor: Predecessor | None = None,
        config_path: Path | None = None,
    ) -> None:
        self.make_role = make_role
        self.config_path = config_path  # for the console's settings pages
        self.config = config
        self.load_config = load_config
        self.sockets = sockets
        self.recover = recover
        self.forward = forward
        self.ignore_sigint = ignore_sigint
        self.lock = lock
        self.inherited = inherited or ListenPlan()
        self.predecessor = predecessor
        self.role: ProcessRole | None = None
        self.stop = asyncio.Event()
        self.deadline = StopDeadline()  # armed when the stop begins
        self.admin: AdminHandle | None = None
        self.web: WebServer | None = None
        self._reload_lock = asyncio.Lock()
        self._reloads: set[asyncio.Task[ReloadOutcome]] = set()
        self._restart = restart.Restart(self)

    # --- the process -------------------------------------------------------------------

    def run(self) -> int:
        """Run the process on a fresh event loop until SIGTERM/SIGINT; its exit status."""
        with asyncio.Runner(loop_factory=new_loop) as runner:
            return runner.run(self.main())

    async def main(self) -> int:
        """Signals, the role, its life; the exit status (see the module contract)."""
        self._install_signals()
        # Our own default thread pool, so that the stop can leave it behind (d).
        executor = ThreadPoolExecutor(thread_name_prefix="pigeon-thread")
        asyncio.get_running_loop().set_default_executor(executor)
        try:
            self.role = self.make_role()
            await self.serve(self.role)
        except Exception as exc:
            status = exit_status(exc, self.config)
            if self.forward is not None:
                self.forward(signal.SIGTERM)  # the workers must not outlive a failed start
            if status is None:
                raise
            return status
        finally:
            await self.deadline.settle(executor)  # (d): only once a stop began
            if self.lock is not None:
                self.lock.release()  # the process ends: the next pigeon may own the queue
        return EX_OK

    def _install_signals(self) -> None:
        """The handlers of SIGTERM, SIGINT, SIGHUP and the retire signal, then
        those signals unblocked."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._on_stop, signal.SIGTERM)
        if self.ignore_sigint:
            loop.add_signal_handler(signal.SIGINT, lambda: None)
        else:
            loop.add_signal_handler(signal.SIGINT, self._on_stop, signal.SIGINT)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        loop.add_signal_handler(restart.RETIRE_SIGNAL, self._restart.on_retire_signal)
        # With workers they were blocked before the fork (app/workers.py): one
        # that came meanwhile is handled from here on, not fatal.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, CONTROL_SIGNALS)

    def _on_stop(self, sig: int) -> None:
        if self.forward is not None:
            self.forward(signal.SIGTERM)  # a worker ignores SIGINT: the main decides
        if self.stop.is_set():  # (f) a second signal: at once
            self.deadline.leave_now(f"second {signal.Signals(sig).name} during the stop")
        self.stop.set()

    async def _stop_for_operator(self) -> dict[str, Any]:
        """`pigeon stop`: the stop SIGTERM makes; the pid to watch and the bound."""
        if self.forward is not None and not self.stop.is_set():
            self.forward(signal.SIGTERM)
        self.stop.set()
        config = self.role.config if self.role is not None else self.config
        bound = config.timeouts.shutdown_grace + HARD_MARGIN + 1
        return {"pid": os.getpid(), "within": bound}

    def _on_sighup(self) -> None:
        task = asyncio.ensure_future(self.reload())
        self._reloads.add(task)  # keep a reference until it is done
        task.add_done_callback(self._reloads.discard)

    # --- start-up, running, shutdown --------------------------------------------------

    async def serve(self, role: ProcessRole) -> None:
        config = role.config
        successor = False
        if role.owns_queue:
            make_data_dir(config.data_dir, config.user)  # PrivilegeError: a symlink
            if self.lock is None:
                self.lock = DataDirLock(config.data_dir)
            # Started by `pigeon restart`, the predecessor holds the lock until it ends.
            successor = self.predecessor is not None and not self.lock.try_acquire()
            if not successor:
                self.lock.acquire()  # DataDirInUse: another pigeon owns this data_dir
        # The owner refuses a damaged queue.db (StoreCorrupt) and keeps
        # `pigeon queue rebuild` out while we run (queue/store.py).
        # The owner upgrades data of the previous release in place; a newer
        # format is refused in one line (docs/upgrade.md, dataformat.py). A
        # successor does both once it holds the lock (app/restart.py).
        owner = role.owns_queue and not successor
        role.store.open(owner=owner)
        role.auth.store.open(owner=owner)
        if owner:
            open_mailboxes(config.mailbox_root)
        try:
            if successor:
                self._restart.preflight(config)
                await self._listen(role)
                if not await self._restart.take_over(role):
                    await self.shutdown(role)  # asked to stop before owning the queue
                    return
            if role.manager is not None:
                # The control socket first: it refuses to start when another
                # pigeon already serves this data directory (ControlError).
                self.admin = await start_admin(
                    config,
                    role.store,
                    role.manager,
                    role.maillog,
                    role.listeners.statistics,
                    metrics=role.metrics,
                    reload=self._reload_for_operator,
                    restart=self._restart.for_operator,
                    stop=self._stop_for_operator,
                    reports=role.reports.for_operator if role.reports is not None else None,
                    signer=lambda: role.signing.signer if role.signing is not None else None,
                )
                # The HTTP API beside it, in this process only (app/console.py).
                self.web = await start_console(
                    config, role, self.admin, self.stop.is_set, config_path=self.config_path
                )
            if not successor:
                await self._listen(role)
            if self.admin is not None:
                self.admin.write_pid_file()  # before dropping root: /run may be root's
            # Everything that needs root is done: listeners bound, files open.
            drop(config.user, config.group, config.data_dir)
            if self.web is not None:
                start_first_admin(config)  # as the user pigeon runs as (app/console.py)
            if self.admin is not None:
                self.admin.publish()  # the submit socket, for local users' sendmail
            await self._run(role)
        finally:
            await self.close(role)

    async def _listen(self, role: ProcessRole) -> None:
        """Serve the listeners (bound now, shared, or inherited: net/inherit.py)."""
        await role.listeners.start(
            self.sockets or self.inherited.bound, managed=self.inherited.managed
        )
        if self.predecessor is not None:
            self.predecessor.accepting()  # the pigeon that started us stops accepting

    async def _run(self, role: ProcessRole) -> None:
        async with asyncio.TaskGroup() as tg:
            manager_task = None
            if role.manager is not None:
                manager_task = tg.create_task(role.manager.run(recover=self.recover))
                self._watch_trigger(role)
                log.info(
                    "pigeon ready: hostname=%s domains=%s data_dir=%s",
                    role.config.hostname,
                    ",".join(sorted(role.config.domains)),
                    role.config.data_dir,
                )
            else:
                log.info("pigeon worker ready (pid %d)", os.getpid())
            # The aggregate reports, once per period (app/reportjob.py).
            reports_task = tg.create_task(role.reports.run(self.stop)) if role.reports else None
            if role.webhooks is not None and role.manager is not None:
                # The webhooks' sender, until the stop (pigeon/webhooks/service.py).
                tg.create_task(role.webhooks.run(self.stop))
            if role.manager is not None:  # the capture limits (qmgr/capture.py)
                tg.create_task(role.manager.capture.run(self.stop, lambda: role.config.capture))
            if role.manager is not None and hasattr(role.store, "wait_for_events"):
                # A shared queue: other nodes' new mail and flushes wake ours (app/clusterwake.py).
                # Announced changes of the shared domains and aliases reload it.
                refresh = directory_refresh(lambda: role.config, self.reload)
                wake = wake_on_new_mail(
                    role.store, role.manager.nudge, self.stop, role.manager.flush, refresh
                )
                tg.create_task(wake)
            if self.admin is not None:
                self.admin.ready()  # sd_notify READY=1 under systemd
            await self.stop.wait()
            if reports_task is not None and not reports_task.done():
                reports_task.cancel()  # a report being queued may be queued again next time
            await self.shutdown(role)
            if manager_task is not None and not manager_task.done():
                manager_task.cancel()

    def _watch_trigger(self, role: ProcessRole) -> None:
        """Worker processes write a byte per accepted message: scan the queue then."""
        fd, manager = role.wake_fd, role.manager
        if fd is None or manager is None:
            return

        def on_trigger() -> None:
            try:
                while os.read(fd, 4096):
                    pass
            except BlockingIOError:
                pass
            manager.nudge()

        asyncio.get_running_loop().add_reader(fd, on_trigger)

    async def shutdown(self, role: ProcessRole) -> None:
        """The stop: see the module contract (the one place it is decided)."""
        grace = role.config.timeouts.shutdown_grace
        self.deadline.arm(grace + HARD_MARGIN)  # (e)
        if self.admin is not None:
            self.admin.stopping()  # sd_notify STOPPING=1
        log.info(
            "stopping%s: not accepting; sessions get up to %gs; gone within %gs",
            "" if role.manager is not None else f" worker {os.getpid()}",
            grace,
            grace + HARD_MARGIN + 1,
        )
        await role.listeners.stop_accepting()  # (a)
        steps: list[Awaitable[object]] = [role.listeners.drain(grace)]  # (c)
        if role.manager is not None:
            steps.append(role.manager.abandon())  # (b), beside (c)
        await asyncio.gather(*steps)
        if role.manager is not None:
            try:  # idle outbound connections: QUIT if the peer takes it at once
                await asyncio.wait_for(close_agents(role.agents), AGENTS_CLOSE)
            except TimeoutError:
                pass

    async def close(self, role: ProcessRole) -> None:
        if role.wake_fd is not None:
            asyncio.get_running_loop().remove_reader(role.wake_fd)
        await role.listeners.close()
        if self.web is not None:
            await self.web.close()
        if self.admin is not None:
            await self.admin.close()
        role.store.close()
        role.auth.close()
        role.policy.deps.close()  # the abuse controls' state, written (policy/abusestate.py)
        close_report_sink(role.report_sink)  # pending report records, written (reports/store.py)
        if role.webhooks is not None:
            await role.webhooks.close()  # events of the last moments, in the outbox

    # --- reload ------------------------------------------------------------------------

    async def reload(self) -> ReloadOutcome:
        """SIGHUP or `pigeon reload`: see the module contract. One at a time."""
        async with self._reload_lock:
            if self.forward is not None:
                self.forward(signal.SIGHUP)  # the workers reload too
            if self.admin is not None:
                self.admin.reloading()  # sd_notify RELOADING=1
            try:
                return await self._reload()
            finally:
                if self.admin is not None:
                    self.admin.ready()  # sd_notify READY=1 again

    async def _reload_for_operator(self) -> dict[str, Any]:
        return (await self.reload()).to_dict()

    async def _reload(self) -> ReloadOutcome:
        role = self.role
        assert role is not None
        if self._restart.retiring:  # its successor serves the configuration now
            problem = "pigeon is handing over to the process `pigeon restart` started"
            return ReloadPlan("refused", role.config, refused=(problem,)).outcome()
        try:
            loaded = self.load_again(role.config)
        except Exception as exc:  # never let a reload take the server down
            problem = f"cannot load the configuration: {exc}"
            plan = ReloadPlan("refused", role.config, refused=(problem,))
        else:
            plan = plan_reload(role.config, loaded, fixed_listeners=self.sockets is not None)
        if plan.status == "refused":
            for error in plan.refused:
                log.error("reload rejected, the running configuration stays in force: %s", error)
            return plan.outcome()
        # Re-read the certificate files at every reload: they may have changed
        # while the configuration did not (a renewed certificate).
        try:
            tls = TlsProvider.create(plan.live)
        except TlsError as exc:
            log.error(
                "TLS reload failed, keeping the previous certificate and the running "
                "configuration: %s",
                exc,
            )
            return ReloadPlan("refused", role.config, refused=(str(exc),)).outcome()
        log.info("TLS certificate reloaded: %s", tls.describe())
        plugins = None
        if plan.live.plugins or role.plugins:  # their code is imported afresh, changed or not
            try:
                plugins = role.load_plugins(plan.live)
            except ConfigError as exc:
                lines = tuple(str(problem) for problem in exc.problems)
                for line in lines:
                    log.error("reload rejected, the running configuration stays in force: %s", line)
                return ReloadPlan("refused", role.config, refused=lines).outcome()
            log.info("reload: %d plugin(s) loaded afresh", len(plugins))
        try:  # the DKIM keys are read again: a new selector, a rotated key
            signing = outbound_signing(plan.live)
        except ConfigError as exc:
            log.error("reload rejected, the running configuration stays in force: %s", exc)
            return ReloadPlan("refused", role.config, refused=(str(exc),)).outcome()
        warnings = await role.apply(plan, tls, plugins, signing)
        if plan.status == "unchanged":
            log.info("reload: configuration unchanged")
        if plan.now:
            log.info("reload: applied %s", ", ".join(plan.now))
        if plan.restart:
            log.warning("reload: %s take effect at the next restart", ", ".join(plan.restart))
        return plan.outcome(warnings)

    def load_again(self, running: Config) -> Config | ConfigError:
        """The configuration again (same file, same flags), or why it does not load."""
        if self.load_config is None:  # no file to re-read: certificates only
            return running
        try:
            return self.load_config()
        except ConfigError as exc:
            return exc
