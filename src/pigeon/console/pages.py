"""How a console page is declared, rendered, and how its forms are read.

Contract:
  * `Page(method, path, handler, nav=None)`: one route of the console; a
    page with `nav` (its label) appears in the navigation bar, in the order
    the pages are registered (console/app.py `add_console`).
  * `render(request, template, http_status=200, **context)` renders a template
    of console/templates with jinja2, autoescaping on (every value put into
    HTML is escaped unless a template says otherwise), and adds to the
    context: `admin` (the logged-in name, or None), `csrf` (the session's
    token, for the hidden field of every form: `{{ csrf_field() }}`),
    `nav` (label, path) pairs, `path` (the current path), `status_code`
    and `static(name)` (the versioned URL of a file of console/static).
    Filter `utc`: a Unix time as "YYYY-MM-DD HH:MM:SS" in UTC.
  * `await form(request)` reads a POSTed form and checks it (CSRF, OWASP's
    synchronizer token pattern): the field `csrf` must equal the session's
    token, compared in constant time, and an `Origin` header, when the
    browser sends one, must be this console's own origin. Otherwise 403.
    Every handler that changes anything is a POST and reads its input
    through `form`; a GET changes nothing.
  * `flash(request, text, kind)` keeps a one-time message in the session,
    shown by the next page rendered (after the POST/redirect/GET).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web
from markupsafe import Markup, escape

from pigeon.console.sessions import SESSION_KEY

__all__ = ["Page", "flash", "form", "redirect", "render", "same_origin"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Where the navigation bar's (label, path) pairs sit in the application.
NAV_KEY = web.AppKey("pigeon_console_nav", list)

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("pigeon.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _utc(when: float | None) -> str:
    """A Unix time as "2026-12-07 05:16:40" UTC (the `utc` filter of the templates)."""
    if when is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when))


_ENV.filters["utc"] = _utc


@dataclass(frozen=True)
class Page:
    method: str
    path: str
    handler: Handler
    nav: str | None = None


def render(
    request: web.Request, template: str, *, http_status: int = 200, **context: Any
) -> web.Response:
    session = request.get(SESSION_KEY)
    csrf = session.csrf if session is not None else ""
    flashes = session.data.pop("flash", []) if session is not None else []

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="csrf" value="{}">').format(escape(csrf))

    body = _ENV.get_template(template).render(
        admin=session.admin if session is not None else None,
        csrf=csrf,
        csrf_field=csrf_field,
        nav=request.app.get(NAV_KEY, []),
        path=request.path,
        flashes=flashes,
        status_code=http_status,
        static=lambda name: str(request.app.router["static"].url_for(filename=name)),
        **context,
    )
    return web.Response(status=http_status, text=body, content_type="text/html", charset="utf-8")


def flash(request: web.Request, text: str, kind: str = "info") -> None:
    session = request.get(SESSION_KEY)
    if session is not None:
        session.data.setdefault("flash", []).append((kind, text))


def redirect(location: str) -> web.HTTPSeeOther:
    """POST/redirect/GET: the answer to a form (raise it)."""
    return web.HTTPSeeOther(location)


def same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:  # browsers that do not send it: the token alone decides
        return True
    # Host only, not the scheme: behind a proxy that ends TLS the console
    # sees http while the browser's origin says https.
    return urlsplit(origin).netloc.lower() == request.host.lower()


async def form(request: web.Request) -> dict[str, str]:
    """The POSTed form's fields, after the CSRF check (see the module contract)."""
    session = request.get(SESSION_KEY)
    data = await request.post()
    token = data.get("csrf")
    if (
        session is None
        or not isinstance(token, str)
        or not hmac.compare_digest(token.encode(), session.csrf.encode())
        or not same_origin(request)
    ):
        raise web.HTTPForbidden(reason="the form is stale or was not sent by this console")
    return {k: v for k, v in data.items() if isinstance(v, str)}
