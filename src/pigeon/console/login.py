"""Logging in and out of the console.

Contract:
  * GET /login shows the form (a logged-in admin is sent on to the
    dashboard). POST /login checks the name and password against the admin
    store (console/admins.py, in a thread: argon2 is slow on purpose); on
    success the old session, if any, is dropped and a new one made (no
    session fixation), its cookie set, and the browser sent to `next` when
    that is a path on this console (never another site: an open redirect
    would help phishing), else to /. On failure the form is shown again
    with one message that does not say whether the name exists, status 401.
  * The login form has no session yet, so no CSRF token: SameSite=Strict
    on the cookie, the Origin check and the fresh session id after login
    stand in for it (logging a victim into the attacker's account is the
    only thing a forged login could do).
  * Rate limiting (console/ratelimit.py): too many failures from one
    address or for one name within the window, and POST /login answers
    429 with Retry-After and a page saying when to try again, without
    checking the password; each refusal is logged. A success resets both.
  * The session remembers the admin's stamp (console/admins.py `stamp`);
    the guard ends it once the password changes or the admin is removed.
  * POST /logout (a form with the CSRF field) ends the session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import web

from pigeon.console.admins import AdminStore
from pigeon.console.pages import Page, form, redirect, render, same_origin
from pigeon.console.ratelimit import LoginLimiter
from pigeon.console.sessions import COOKIE, SESSION_KEY, SessionStore, cookie_options

__all__ = ["login_pages", "safe_next"]

log = logging.getLogger("pigeon")


def safe_next(target: str | None) -> str:
    """`target` when it is a path on this site, else "/"."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x20 or c == "\x7f" for c in target)
    ):
        return "/"
    return target


def login_pages(
    admins: AdminStore,
    sessions: SessionStore,
    clock: Callable[[], float] = time.time,
    limiter: LoginLimiter | None = None,
) -> list[Page]:
    limiter = limiter if limiter is not None else LoginLimiter()

    async def show(request: web.Request) -> web.StreamResponse:
        if request.get(SESSION_KEY) is not None:
            raise redirect(safe_next(request.query.get("next")))
        return render(request, "login.html", next=safe_next(request.query.get("next")), error=None)

    async def submit(request: web.Request) -> web.StreamResponse:
        if not same_origin(request):
            raise web.HTTPForbidden(reason="the login form was not sent by this console")
        data = await request.post()
        name = str(data.get("name", "")).strip()
        password = str(data.get("password", ""))
        target = safe_next(str(data.get("next", "")))
        peer = request.remote or "?"
        wait = limiter.retry_after(peer, name, clock())
        if wait is not None:
            log.warning(
                "web console: login for %r from %s refused: too many failures (retry in %ds)",
                name[:64],
                peer,
                wait,
            )
            response = render(
                request,
                "login.html",
                http_status=429,
                next=target,
                error=f"Too many failed logins. Try again in {_minutes(wait)}.",
            )
            response.headers["Retry-After"] = str(wait)
            return response
        ok = bool(name) and await asyncio.to_thread(admins.verify, name, password)
        if not ok:
            limiter.failed(peer, name, clock())
            log.warning("web console: failed login for %r from %s", name[:64], peer)
            return render(
                request,
                "login.html",
                http_status=401,
                next=target,
                error="The name or the password is wrong.",
            )
        limiter.succeeded(peer, name)
        sessions.drop(request.cookies.get(COOKIE))
        session = sessions.create(name, clock(), stamp=admins.stamp(name))
        log.info("web console: %s logged in from %s", name, peer)
        response = web.HTTPSeeOther(target)
        response.set_cookie(COOKIE, session.sid, **cookie_options(request.secure))
        raise response

    async def logout(request: web.Request) -> web.StreamResponse:
        await form(request)
        sessions.drop(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    return [
        Page("GET", "/login", show),
        Page("POST", "/login", submit),
        Page("POST", "/logout", logout),
    ]


def _minutes(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = -(-seconds // 60)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
