"""The console's middlewares: who may see a page, what the browser may do with it.

Contract:
  * `guard_middleware(sessions, clock, admins)`: a request under /api/ is the
    API's business (bearer tokens, web/auth.py) and passes untouched; so do
    the public paths (PUBLIC: the login page and the static files). Any
    other request needs a live session (the cookie console/sessions.py
    sets); the session is put in `request[SESSION_KEY]`. With `admins`
    given, a session whose stamp (the admin's password hash at login,
    console/admins.py) is no longer the admin's current one is ended
    first: a removed admin or a changed password logs that admin out at
    the next request, also when `pigeon admin` changed the store while
    pigeon runs. Without a session a GET
    is sent to /login?next=PATH (303), anything else gets 403.
  * Every console response (not /api/) carries the headers that keep a
    page from being framed or sniffed and forbid scripts and content from
    elsewhere: Content-Security-Policy (default-src 'self', no inline
    script, frame-ancestors 'none'), X-Frame-Options DENY, Referrer-Policy
    same-origin (no referrer to other sites; not no-referrer: under that
    policy a browser sends `Origin: null` with every form POST, Fetch
    standard "append a request Origin header", and the Origin check of
    console/pages.py `same_origin` would refuse the console's own forms).
    A page that must differ (the message viewer's sandboxed
    frame) sets its own Content-Security-Policy before it is sent; this
    middleware leaves a page's own header alone.
  * `errors_middleware`: an HTTP error on a console path is an HTML page
    (templates/error.html), not the API's problem+json; an unexpected
    exception is logged with its traceback and shown as a generic 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import quote

from aiohttp import web

from pigeon.console.admins import AdminStore
from pigeon.console.pages import Handler, render
from pigeon.console.sessions import COOKIE, SESSION_KEY, SessionStore

__all__ = ["PUBLIC", "errors_middleware", "guard_middleware", "is_console_path"]

log = logging.getLogger("pigeon.web")

#: Paths served without a session (exact, or a prefix ending in "/").
PUBLIC = ("/login", "/static/")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def is_console_path(path: str) -> bool:
    return not (path == "/api" or path.startswith("/api/"))


def _public(path: str) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in PUBLIC)


def guard_middleware(
    sessions: SessionStore,
    clock: Callable[[], float] = time.time,
    admins: AdminStore | None = None,
) -> Callable:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not is_console_path(request.path):
            return await handler(request)
        session = sessions.get(request.cookies.get(COOKIE), clock())
        if (
            session is not None
            and admins is not None
            and admins.stamp(session.admin) != session.stamp
        ):
            # This session only: one made after the change has the new stamp.
            sessions.drop(session.sid)
            log.info(
                "web console: a session of %s ended (admin removed or password changed)",
                session.admin,
            )
            session = None
        if session is not None:
            request[SESSION_KEY] = session
        elif not _public(request.path):
            if request.method in ("GET", "HEAD"):
                raise web.HTTPSeeOther("/login?next=" + quote(request.path_qs, safe="/"))
            raise web.HTTPForbidden(reason="log in first")
        response = await handler(request)
        _secure_headers(response)
        return response

    return guard


def _secure_headers(response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_console_path(request.path):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = render(request, "error.html", http_status=exc.status, reason=exc.reason)
    except Exception:
        log.exception("web console: %s %s failed", request.method, request.rel_url.path)
        response = render(
            request, "error.html", http_status=500, reason="internal error (see the pigeon log)"
        )
    _secure_headers(response)
    return response
