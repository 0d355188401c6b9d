"""Start the administration side of a running pigeon: control socket, metrics, systemd.

Contract:
  * `start_admin(config, store, manager, maillog, server_stats, metrics=None)`
    is called once by the composition root (pigeon.app) after the store is
    open and before the listeners are announced ready. It
      1. serves the control socket at `config.control_socket` (0600) with
         the operations of `pigeon.admin.ops` over `manager` and `store`;
         failure is fatal (`ControlError`): a second pigeon on the same
         data_dir must not start;
      2. serves the submit socket at `config.submit_socket` (0666) for
         local users' `sendmail` (pigeon.admin.submitsock); if it cannot be
         created, an error is logged and pigeon runs without it (SMTP mail
         must not stop for it);
      3. serves `GET /metrics` on `[admin] metrics_listen` unless it is "";
         if the address cannot be bound, an error is logged and pigeon runs
         without the endpoint (monitoring must never stop mail);
      4. claims the PID file (`pigeon.admin.pidfile`: refused, as
         `PidFileError`, when another live pigeon holds it);
      5. returns an `AdminHandle` (with `ops`, the operations of step 1, which
         the HTTP API (app/console.py) serves as well); `handle.write_pid_file()` writes the pid
         once the listeners are bound, `handle.ready()` sends READY=1 to
         systemd, `handle.stopping()` STOPPING=1 as a stop begins,
         `handle.publish()` (after root was dropped) opens the submit
         socket to local users again, `handle.close()` sends STOPPING=1,
         closes the servers and removes the PID file.
  * `reload` is the coroutine behind the control socket's "reload"
    operation (`pigeon reload`), returning the outcome as a dict; `restart`
    the one behind "restart" (`pigeon restart`, app/restart.py). After a
    restart handed the service over, neither `handle.stopping()` nor
    `handle.close()` sends STOPPING=1: the service goes on in the new
    process. `stop` is the one behind
    "stop" (`pigeon stop`); `reports` the one behind "reports" (`pigeon
    reports send`, app/reportjob.py), None when reports are off.
  * `metrics` is the `Metrics` the app also gives to the queue manager (and,
    when wired, the SMTP server); None makes one here, bound to the store's
    queue counts and `server_stats`, available as `handle.metrics`.
  * `maillog` receives the "(queued)" line of mail submitted by `sendmail`
    (op "nudge" with ids); operator actions are logged by the manager.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pigeon.admin import sdnotify
from pigeon.admin.control import ControlError, ControlServer
from pigeon.admin.ops import build_handlers
from pigeon.admin.pidfile import PidFile, PidFileError
from pigeon.admin.submitsock import SubmitServer
from pigeon.config.schema import Config
from pigeon.net.listener import bind_reason
from pigeon.obs.metrics import Metrics, MetricsServer

__all__ = ["AdminHandle", "start_admin"]

log = logging.getLogger("pigeon.admin")


@dataclass
class AdminHandle:
    control: ControlServer
    metrics: Metrics
    metrics_server: MetricsServer | None
    pid_file: PidFile | None = None
    submit: SubmitServer | None = None
    #: `pigeon restart` handed the service to a new process: systemd hears from it now.
    handed_over: bool = False
    #: The control socket's operations (admin/ops.py), for the HTTP API (pigeon.web),
    #: which asks the queue manager exactly as `pigeon queue` does.
    ops: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def write_pid_file(self) -> None:
        """Start-up is done: publish our pid (PidFileError if it cannot be written)."""
        if self.pid_file is not None:
            self.pid_file.write()

    def ready(self, status_text: str = "") -> None:
        """Tell systemd we are up (no-op outside systemd)."""
        sdnotify.ready(status_text or "accepting mail")

    def reloading(self) -> None:
        sdnotify.reloading()

    def stopping(self) -> None:
        """Tell systemd the stop has begun (no-op outside systemd, and after a
        `pigeon restart` handed the service over: it goes on)."""
        if not self.handed_over:
            sdnotify.stopping()

    def publish(self) -> None:
        """After dropping root (whose hand-over made every file private): reopen the
        submit socket to local users."""
        if self.submit is not None:
            try:
                self.submit.publish()
            except OSError as exc:
                log.error(
                    "submit socket %s not opened to local users: %s",
                    self.submit.path,
                    exc.strerror or exc,
                )

    async def close(self) -> None:
        if not self.handed_over:
            sdnotify.stopping()
        if self.metrics_server is not None:
            await self.metrics_server.close()
        if self.submit is not None:
            await self.submit.close()
        await self.control.close()
        if self.pid_file is not None:
            self.pid_file.remove()


async def start_admin(
    config: Config,
    store: Any,
    manager: Any,
    maillog: Any = None,
    server_stats: Callable[[], dict[str, Any]] | None = None,
    metrics: Metrics | None = None,
    reload: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    restart: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    stop: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    reports: Callable[..., Awaitable[dict[str, Any]]] | None = None,
    signer: Callable[[], Any] = lambda: None,
) -> AdminHandle:
    """See the module contract. Raises `pigeon.admin.control.ControlError`
    or `pigeon.admin.pidfile.PidFileError`."""
    if metrics is None:
        metrics = Metrics()
    metrics.bind(
        queue_counts=store.counts,
        server_stats=server_stats,
        storage=getattr(manager, "storage_status", None),
        cluster=getattr(store, "nodes", None),  # a shared queue's nodes (store/pg/nodes.py)
    )
    log_file: Path | None = config.log.file
    handlers = build_handlers(
        store=store,
        manager=manager,
        maillog=maillog,
        log_file=log_file,
        server_stats=server_stats,
        reload=reload,
        restart=restart,
        stop=stop,
        reports=reports,
    )
    control = ControlServer(config.control_socket, handlers)
    await control.start()
    pid_file = PidFile(config.pid_file)
    try:
        pid_file.claim()
    except PidFileError:
        await control.close()
        raise
    submit: SubmitServer | None = None
    candidate = SubmitServer(
        config.submit_socket,
        config=config,
        store=store,
        on_queued=manager.submit,
        maillog=maillog,
        signer=signer,
        metrics=metrics,
    )
    try:
        await candidate.start()
        submit = candidate
    except ControlError as exc:
        log.error("%s; local users cannot send mail with sendmail", exc)
    server = None
    listen = config.admin.metrics_listen
    if listen is not None:
        server = MetricsServer(listen.host, listen.port, metrics)
        try:
            await server.start()
        except OSError as exc:
            log.error(
                "metrics endpoint %s not started: %s (set by [admin] metrics_listen in the "
                'configuration or --metrics-listen; "" turns it off)',
                listen,
                bind_reason(exc),
            )
            server = None
    return AdminHandle(control, metrics, server, pid_file, submit, ops=handlers)
