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
#: Seconds a grouping of the queue by destination is shown before it is made again.
DESTINATIONS_TTL = 30.0
#: Past this many queued messages the queue is not grouped by destination
#: (reading every entry each half minute would cost more than it tells).
MAX_GROUPED = 100_000
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


class Destinations:
    """The queue by destination, read again at most every `DESTINATIONS_TTL`
    seconds and not at all past `MAX_GROUPED` messages (module contract)."""

    def __init__(self, ops: Any) -> None:
        self.ops = ops
        self.at: float | None = None
        self.rows: list[list[Any]] = []
        self.skipped = False

    async def get(self, queued: int, now: float) -> tuple[list[list[Any]], bool]:
        if "list" not in self.ops:
            return [], False
        if self.at is None or now - self.at >= DESTINATIONS_TTL or now < self.at:
            self.at = now
            self.skipped = queued > MAX_GROUPED
            if not self.skipped:
                listed = await self.ops["list"](filters={})
                self.rows = by_destination(listed["entries"])
        return ([] if self.skipped else self.rows), self.skipped


async def dashboard_data(
    deps: ConsoleDeps, now: float, destinations: Destinations
) -> dict[str, Any]:
    """Every number of the dashboard (module contract), JSON-ready."""
    status = await deps.ops["status"]()
    queued = sum(n for n in (status.get("queue") or {}).values() if isinstance(n, int))
    rows, skipped = await destinations.get(queued, now)
    data: dict[str, Any] = {
        "status": status,
        "queue": dict(status.get("queue") or {}),
        "in_flight": status.get("in_flight", 0),
        "destinations": rows,
        "destinations_skipped": skipped,
        "top_reasons": deps.activity.top_reasons() if deps.activity is not None else [],
        "series": deps.stats is not None,
        "workers": deps.workers,
    }
    if deps.stats is not None:
        data.update(deps.stats.snapshot(now))
    return data


def dashboard_pages(deps: ConsoleDeps, clock: Callable[[], float] = time.time) -> list[Page]:
    destinations = Destinations(deps.ops)

    async def dashboard(request: web.Request) -> web.StreamResponse:
        data = await dashboard_data(deps, clock(), destinations)
        # the last ten minutes, newest first, as a table beside the chart
        minutes = list(reversed(data.get("minutes", [])[-10:]))
        return render(request, "dashboard.html", data=data, minutes=minutes)

    async def stats_json(request: web.Request) -> web.StreamResponse:
        return web.json_response(await dashboard_data(deps, clock(), destinations))

    return [
        Page("GET", "/", dashboard, nav="Dashboard"),
        Page("GET", "/console/stats.json", stats_json),
    ]
