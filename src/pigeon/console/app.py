"""The web console added to the HTTP API's aiohttp application.

    add_console(app, deps)

Contract:
  * Registers the console's pages (login, dashboard, ...: each module's
    `*_pages` list, console/pages.py `Page`) and its static files under
    /static/, and appends its middlewares (console/guard.py): HTML errors
    for console paths, then the session guard. Call it after
    web/app.py `build_app` and before the application starts.
  * The navigation bar lists the pages that have a `nav` label, in the
    order registered here.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from pigeon.console.accounts import accounts_pages
from pigeon.console.activity import activity_pages
from pigeon.console.capture_pages import capture_pages
from pigeon.console.dashboard import dashboard_pages
from pigeon.console.deps import ConsoleDeps
from pigeon.console.guard import errors_middleware, guard_middleware
from pigeon.console.login import login_pages
from pigeon.console.mailbox_pages import mailbox_pages
from pigeon.console.pages import NAV_KEY, Page
from pigeon.console.queue import queue_pages
from pigeon.console.settings import settings_pages

__all__ = ["add_console", "console_pages"]

STATIC = Path(__file__).parent / "static"


def console_pages(deps: ConsoleDeps) -> list[Page]:
    """Every page of the console, in navigation order."""
    pages = login_pages(deps.admins, deps.sessions)
    pages += dashboard_pages(deps)
    pages += queue_pages(deps)
    pages += activity_pages(deps.activity)
    pages += mailbox_pages(deps)
    pages += capture_pages(deps)
    pages += settings_pages(deps) + accounts_pages(deps)
    return pages


def add_console(app: web.Application, deps: ConsoleDeps) -> None:
    pages = console_pages(deps)
    for page in pages:
        app.router.add_route(page.method, page.path, page.handler)
    app.router.add_static("/static/", STATIC, name="static", append_version=True)
    app[NAV_KEY] = [(p.nav, p.path) for p in pages if p.nav]
    app.middlewares.append(errors_middleware)
    app.middlewares.append(guard_middleware(deps.sessions, admins=deps.admins))
