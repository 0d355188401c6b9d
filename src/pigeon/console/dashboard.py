"""The console's dashboard (/): the queue at a glance.

Contract:
  * GET / renders the queue manager's statistics (the control socket's
    `status` operation, as `pigeon status` prints them).
  * SKELETON: charts (messages per minute in and out), delivery and
    deferral rates, TLS share and top rejection reasons are still to come
    (issue 15); this page shows the counts only.
"""

from __future__ import annotations

from aiohttp import web

from pigeon.console.deps import ConsoleDeps
from pigeon.console.pages import Page, render

__all__ = ["dashboard_pages"]


def dashboard_pages(deps: ConsoleDeps) -> list[Page]:
    async def dashboard(request: web.Request) -> web.StreamResponse:
        status = await deps.ops["status"]()
        return render(request, "dashboard.html", status=status)

    return [Page("GET", "/", dashboard, nav="Dashboard")]
