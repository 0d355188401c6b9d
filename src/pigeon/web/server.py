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
    in a header field...) is the client's mistake: it is one INFO line
    here, the parser's message escaped, never a traceback (CONTRIBUTING.md,
    rules 6 and 17).
  * That request never reaches the application (no route, no middleware:
    aiohttp answers it from its protocol handler, `RequestHandler.handle_error`),
    so the handler is ours (`_ProblemHandler`, made by the runner's server)
    and its answer is an RFC 9457 problem like every other error of the
    API: the status aiohttp chose (400; 500 or 504 for a failure of the
    handler itself), a detail naming the parser's complaint for a 4xx
    (escaped, at most 200 characters) and a generic one otherwise, and the
    connection closed (after a request that does not parse, the stream is
    not in step any more).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from pigeon.config.schema import ListenAddress
from pigeon.web.problem import problem_response

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


def _reason(exc: BaseException | None) -> str:
    """The parser's complaint, one escaped line of at most 200 characters."""
    text = exc.message if isinstance(exc, HttpProcessingError) else ""
    return ascii(" ".join(str(text).split()))[1:-1][:200]


class _ProblemHandler(RequestHandler):
    """aiohttp's protocol handler, answering what it cannot parse with a problem."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own first: it logs (through _ClientMistakes) and raises
        # when a response has begun already (nothing more can be sent).
        super().handle_error(request, status, exc, message)
        if 400 <= status < 500:
            reason = _reason(exc)
            detail = "the request is not HTTP that can be read" + (f": {reason}" if reason else "")
        else:
            detail = "the request could not be handled; the server's log has the cause"
        # RFC 9112 §9.6: a server that will close says so.
        response = problem_response(status, detail, headers={"Connection": "close"})
        response.force_close()
        return response


class _ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        # The protocol class aiohttp made, with our handle_error: same slots
        # (`__slots__ = ()`), so only the method differs.
        handler.__class__ = _ProblemHandler
        return handler


class _Runner(web.AppRunner):
    """The application runner whose server makes `_ProblemHandler`s."""

    async def _make_server(self) -> web.Server:  # BaseRunner's abstract factory
        server = await super()._make_server()
        server.__class__ = _ProblemServer  # a subclass with no state of its own
        return server


class WebServer:
    def __init__(self, app: web.Application, address: ListenAddress) -> None:
        self.app = app
        self.address = address
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = _Runner(
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
