"""The console's dashboard (/) and the numbers behind its live charts.

Contract:
  * GET / renders, server-side (the page is complete without JavaScript):
    the queue by state (the control socket's `status`, as `pigeon status`
    prints it), the queue by destination (the recipient domains not yet
    done, from `list`: the `DESTINATIONS` largest), messages per minute in
    and out over the last ten minutes, the delivery success, deferral and
    bounce rates and the TLS share since start, the refusals by reply code
    and the top rejection reasons (console/stats.py, console/activity.py).
  * GET /console/stats.json (behind the session like every console page,
    not under /api/: it is the page's own feed, not part of the API and
    its OpenAPI document) answers the same numbers as JSON, with both
    series (10 s slots for 10 minutes, 1 minute slots for the hour);
    console/static/dashboard.js polls it every 10 s and redraws the charts.
  * With `workers > 1` the page says that the counters (mail in, TLS,
    refusals, local copies written at the accept) are the main process's
    only: each worker counts its own and nothing adds them up.
  * Without a sampler (deps.stats None) the page shows the queue only and
    says the charts are off; the JSON has `"series": false`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from pigeon.console.deps import ConsoleDeps
from pigeon.console.pages import Page, render

__all__ = ["DESTINATIONS", "by_destination", "dashboard_pages"]

#: How many destinations the dashboard lists.
DESTINATIONS = 10
#: Recipient statuses still waiting for delivery (queue/model.py RecipientStatus).
_WAITING = frozenset({"pending", "deferred"})


def by_destination(entries: Iterable[dict[str, Any]], n: int = DESTINATIONS) -> list[list[Any]]:
    """[domain, messages, recipients] for the `n` domains with the most
    recipients still waiting, from `pigeon queue list` rows."""
    messages: Counter[str] = Counter()
    recipients: Counter[str] = Counter()
    for entry in entries:
        seen: set[str] = set()
        for r in entry.get("recipients", ()):
            if r.get("status") not in _WAITING:
                continue
            domain = r["address"].rpartition("@")[2].lower() or "(none)"
            recipients[domain] += 1
            if domain not in seen:
                seen.add(domain)
                messages[domain] += 1
    return [[d, messages[d], c] for d, c in recipients.most_common(n)]


async def dashboard_data(deps: ConsoleDeps, now: float) -> dict[str, Any]:
    """Every number of the dashboard (module contract), JSON-ready."""
    status = await deps.ops["status"]()
    destinations: list[list[Any]] = []
    if "list" in deps.ops:
        listed = await deps.ops["list"](filters={})
        destinations = by_destination(listed["entries"])
    data: dict[str, Any] = {
        "status": status,
        "queue": dict(status.get("queue") or {}),
        "in_flight": status.get("in_flight", 0),
        "destinations": destinations,
        "top_reasons": deps.activity.top_reasons() if deps.activity is not None else [],
        "series": deps.stats is not None,
        "workers": deps.workers,
    }
    if deps.stats is not None:
        data.update(deps.stats.snapshot(now))
    return data


def dashboard_pages(deps: ConsoleDeps, clock: Callable[[], float] = time.time) -> list[Page]:
    async def dashboard(request: web.Request) -> web.StreamResponse:
        data = await dashboard_data(deps, clock())
        # the last ten minutes, newest first, as a table beside the chart
        minutes = list(reversed(data.get("minutes", [])[-10:]))
        return render(request, "dashboard.html", data=data, minutes=minutes)

    async def stats_json(request: web.Request) -> web.StreamResponse:
        return web.json_response(await dashboard_data(deps, clock()))

    return [
        Page("GET", "/", dashboard, nav="Dashboard"),
        Page("GET", "/console/stats.json", stats_json),
    ]
