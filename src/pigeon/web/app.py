"""The aiohttp application of the HTTP API (docs/api.md).

    app = build_app(WebDeps(tokens=..., ops=..., ready=..., max_body=...))

Contract:
  * `build_app(deps)` registers exactly the routes of `api_routes(deps)`
    (web/routes.py: health, readiness, the OpenAPI document, the queue,
    captured mail (web/capture_routes.py), sending, the local mailboxes:
    web/mailbox_routes.py),
    the ones with a scope behind the bearer check (web/auth.py), with the
    problem middleware (web/problem.py) in front of everything: every
    error, aiohttp's own 404/405/413 and malformed JSON included, is an
    RFC 9457 problem, never a traceback.
  * The body limit is `deps.max_body`: a request that declares a longer
    body (Content-Length) is refused 413 before a byte of it is read; one
    that sends more without declaring it is cut off by aiohttp at the limit
    (413 as well).
  * The application is built so that the web console (issue 15) can add
    its own routes to the same application later, outside `/api/` (the
    OpenAPI document describes the `/api/` routes, all of them and only
    them: tests/unit/web/test_problem_openapi.py); the middlewares apply
    to them too.
  * Every response says `Cache-Control: no-store` (queue contents and
    addresses must not sit in a cache) and `X-Content-Type-Options:
    nosniff` (JSON stays JSON).
  * Handlers never change queue state themselves: `deps.ops` are the
    control socket's operations (pigeon.admin.ops), which ask the queue
    manager.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from pigeon import __version__
from pigeon.web import capture_routes, mailbox_routes, queue_routes, send_route
from pigeon.web.auth import guarded
from pigeon.web.openapi import build_document
from pigeon.web.problem import Problem, error_middleware
from pigeon.web.routes import Handler, Route
from pigeon.web.send_route import Submit
from pigeon.web.tokens import TokenStore

__all__ = ["WebDeps", "api_routes", "build_app"]


@dataclass(frozen=True)
class WebDeps:
    tokens: TokenStore
    #: the control socket's operations (pigeon.admin.ops.build_handlers)
    ops: Mapping[str, Callable[..., Awaitable[dict[str, Any]]]]
    #: readiness checks by name -> passed (app/console.py)
    ready: Callable[[], Awaitable[dict[str, bool]]]
    max_body: int
    #: queues a message for POST /api/send (admin/apisubmit.py `ApiSubmitter.send`)
    submit: Submit
    #: the Maildirs' root for /api/mailboxes (config.mailbox_root; None: no mailboxes)
    mailbox_root: Path | None = None


_HEALTH = {
    "type": "object",
    "required": ["status", "version"],
    "properties": {"status": {"const": "ok"}, "version": {"type": "string"}},
}
_READY = {
    "type": "object",
    "required": ["ready", "checks"],
    "properties": {
        "ready": {"type": "boolean"},
        "checks": {"type": "object", "additionalProperties": {"type": "boolean"}},
    },
}


def api_routes(deps: WebDeps) -> list[Route]:
    """Every route of the API (the OpenAPI document is built from this list)."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__})

    async def ready(request: web.Request) -> web.Response:
        checks = await deps.ready()
        ok = all(checks.values())
        if not ok:
            failing = ", ".join(name for name, passed in checks.items() if not passed)
            raise Problem(503, f"not ready: {failing}", ready=False, checks=checks)
        return web.json_response({"ready": True, "checks": checks})

    routes = [
        Route("GET", "/api/health", health, None, "Liveness: the process answers", _HEALTH),
        Route(
            "GET",
            "/api/ready",
            ready,
            None,
            "Readiness: the queue is open and the mail listeners are bound",
            _READY,
            problems=(503,),
        ),
    ]
    routes += queue_routes.routes(deps.ops)
    routes += capture_routes.routes(deps.ops)
    routes.append(send_route.route(deps.submit))
    routes += mailbox_routes.routes(deps.mailbox_root)
    document: dict[str, Any] = {}

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    routes.append(
        Route(
            "GET",
            "/api/openapi.json",
            openapi,
            None,
            "This document (OpenAPI 3.1)",
            {"type": "object"},
        )
    )
    document.update(build_document(routes, version=__version__))
    return routes


def _size_limit(max_body: int) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > max_body:
            raise Problem(
                413, f"the request body is too large: {length} octets, at most {max_body}"
            )
        return await handler(request)

    return limit


async def _no_store(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"


def build_app(deps: WebDeps) -> web.Application:
    """The application (see the module contract)."""
    app = web.Application(
        client_max_size=deps.max_body,
        middlewares=[error_middleware, _size_limit(deps.max_body)],
    )
    app.on_response_prepare.append(_no_store)
    for route in api_routes(deps):
        handler = route.handler
        if route.scope is not None:
            tenants = route.path.startswith(capture_routes.PREFIX)
            handler = guarded(handler, route.scope, deps.tokens, tenants=tenants)
        app.router.add_route(route.method, route.path, handler)
    return app
