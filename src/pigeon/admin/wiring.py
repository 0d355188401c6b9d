"""Start the administration side of a running pigeon: control socket, metrics, systemd.

Contract:
  * `start_admin(config, store, manager, maillog, server_stats, metrics=None)`
    is called once by the composition root (pigeon.app) after the store is
    open and before the listeners are announced ready. It
      1. serves the control socket at `config.control_socket` (0600) with
         the operations of `pigeon.admin.ops` over `manager` and `store`;
         failure is fatal (`ControlError`): a second pigeon on the same
         data_dir must not start;
      2. serves `GET /metrics` on `[admin] metrics_listen` unless it is "";
         if the address cannot be bound, an error is logged and pigeon runs
         without the endpoint (monitoring must never stop mail);
      3. returns an `AdminHandle`; `handle.ready()` sends READY=1 to systemd,
         `handle.close()` sends STOPPING=1 and closes both servers.
  * `metrics` is the `Metrics` the app also gives to the QueueManager (and,
    when wired, the SMTP server); None makes one here, bound to the store's
    queue counts and `server_stats`, available as `handle.metrics`.
  * `maillog` receives the "(queued)" line of mail submitted by `sendmail`
    (op "nudge" with ids); operator actions are logged by the manager.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pigeon.admin import sdnotify
from pigeon.admin.control import ControlServer
from pigeon.admin.ops import build_handlers
from pigeon.obs.metrics import Metrics, MetricsServer

__all__ = ["AdminHandle", "start_admin"]

log = logging.getLogger("pigeon.admin")


@dataclass
class AdminHandle:
    control: ControlServer
    metrics: Metrics
    metrics_server: MetricsServer | None

    def ready(self, status_text: str = "") -> None:
        """Tell systemd we are up (no-op outside systemd)."""
        sdnotify.ready(status_text or "accepting mail")

    def reloading(self) -> None:
        sdnotify.reloading()

    async def close(self) -> None:
        sdnotify.stopping()
        if self.metrics_server is not None:
            await self.metrics_server.close()
        await self.control.close()


async def start_admin(config, store, manager, maillog: Any = None,
                      server_stats: Callable[[], dict] | None = None,
                      metrics: Metrics | None = None) -> AdminHandle:
    """See the module contract. Raises `pigeon.admin.control.ControlError`."""
    if metrics is None:
        metrics = Metrics()
    metrics.bind(queue_counts=store.counts, server_stats=server_stats,
                 storage=getattr(manager, "storage_status", None))
    log_file: Path | None = config.log.file
    handlers = build_handlers(store=store, manager=manager, maillog=maillog, log_file=log_file,
                              server_stats=server_stats)
    control = ControlServer(config.control_socket, handlers)
    await control.start()
    server = None
    listen = config.admin.metrics_listen
    if listen is not None:
        server = MetricsServer(listen.host, listen.port, metrics)
        try:
            await server.start()
        except OSError as exc:
            log.error("metrics endpoint %s not started: %s", listen, exc.strerror or exc)
            server = None
    return AdminHandle(control, metrics, server)
