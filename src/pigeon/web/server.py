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
    (web/problem.py). A request that is not HTTP aiohttp can parse (a NUL
    in a header field...) is the client's mistake: aiohttp answers it 400
    and it is one INFO line here, the parser's message escaped, never a
    traceback (CONTRIBUTING.md, rules 6 and 17).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from pigeon.config.schema import ListenAddress

__all__ = ["CLOSE_GRACE", "WebServer"]

log = logging.getLogger("pigeon.web")

#: Seconds requests in progress get when pigeon stops.
CLOSE_GRACE = 2.0


class _ClientMistakes(logging.Filter):
    """aiohttp's "Error handling request" for a request it could not parse,
    made one escaped INFO line without the traceback (see the contract)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "HTTP API: a malformed request from %s refused (400): %s"
            record.args = (peer, ascii(" ".join(str(exc.message).split()))[1:-1][:200])
            record.exc_info = record.exc_text = None
        return True


#: The logger aiohttp's request handler reports to (its "aiohttp.server" otherwise).
http_log = logging.getLogger("pigeon.web.http")
http_log.addFilter(_ClientMistakes())


class WebServer:
    def __init__(self, app: web.Application, address: ListenAddress) -> None:
        self.app = app
        self.address = address
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=CLOSE_GRACE,
            logger=http_log,
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
