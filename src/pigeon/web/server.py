"""The listener of the HTTP API: an aiohttp application served in pigeon's own loop.

Contract:
  * `WebServer(app, address)`: `start()` binds `address` (OSError when it
    cannot) and serves the application on the running event loop, no
    thread and no process of its own; `port` is the port bound (0 in the
    configuration resolves to a real one); `close()` stops listening and
    ends the requests in progress within `CLOSE_GRACE` seconds (bounded:
    the stop of pigeon must not wait on an HTTP client).
  * No access log of its own (the mail log and the pigeon log stay what
    they are); an unexpected error is logged by the problem middleware
    (web/problem.py).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from pigeon.config.schema import ListenAddress

__all__ = ["CLOSE_GRACE", "WebServer"]

log = logging.getLogger("pigeon.web")

#: Seconds requests in progress get when pigeon stops.
CLOSE_GRACE = 2.0


class WebServer:
    def __init__(self, app: web.Application, address: ListenAddress) -> None:
        self.app = app
        self.address = address
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=CLOSE_GRACE
        )
        await runner.setup()
        site = web.TCPSite(
            runner, self.address.host, self.address.port, reuse_address=True, backlog=128
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        for addr in runner.addresses:
            self.port = addr[1]
            break
        log.info("HTTP API listening on %s:%d", self.address.host, self.port)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            await asyncio.wait_for(runner.cleanup(), CLOSE_GRACE + 1)
        except TimeoutError:
            log.warning("HTTP API: requests still in progress were cut off at the stop")
