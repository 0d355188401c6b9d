"""The dashboard's numbers over time: counter deltas sampled into bounded rings.

Contract:
  * `Sampler(read)` is given a callable returning this process's counter
    totals (obs/metrics.py `Metrics.counter_totals`) and keeps, from them:
    `FINE_SLOTS` slots of `INTERVAL` seconds (the last 10 minutes) and
    `MINUTE_SLOTS` slots of one minute (the last hour), each slot holding
    how many messages came in (queued), went out (recipients delivered),
    were deferred, bounced (and expired), and commands refused. Both rings
    are deques with a maximum length (CONTRIBUTING.md, rule 4).
  * `tick(now)` reads the totals once and adds the difference to the last
    reading into the slot `now` falls in; it never reads the clock itself
    (CONTRIBUTING.md, rule 2): the console's task (`run`) passes the time.
    The first tick only takes the starting point. A total that went down
    (it never should: counters only grow) counts as zero, not negative.
  * `snapshot(now)` is a JSON-ready dict: both series (oldest first, empty
    slots filled with zeros so a chart has no gaps), the totals since the
    process started, and the rates: delivery success (delivered / all
    final and deferred outcomes), deferral (deferred / the same), TLS share
    (TLS handshakes / SMTP connections) and the refusals by reply code.
    A rate with nothing to divide by is None ("no data"), never 0.
  * `run(clock, interval)` ticks until cancelled (the console's lifecycle,
    app/console.py, cancels it when the console stops).
  * Coverage: the counters are this process's. With `workers > 1` the
    workers count their own (docs/config.md, `workers`): mail they accept
    is not "in" here; deliveries are (the main process delivers the queue),
    except local copies a worker writes at the accept (docs/console.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["FINE_SLOTS", "INTERVAL", "MINUTE_SLOTS", "SERIES", "Sampler", "read_totals"]

log = logging.getLogger("pigeon.web")

#: Seconds between samples, and the width of a fine slot.
INTERVAL = 10
FINE_SLOTS = 60  # 10 minutes
MINUTE_SLOTS = 60  # 1 hour
#: What each slot counts.
SERIES = ("in", "out", "deferred", "bounced", "rejected")
#: SMTP connection roles (the readers' connections are not mail in).
_SMTP_ROLES = frozenset({"smtp", "submission", "submissions", "smtps", "lmtp"})

Totals = dict[str, dict[tuple[str, ...], float]]


def read_totals(totals: Totals) -> dict[str, float]:
    """The flat numbers the dashboard follows, from `Metrics.counter_totals()`."""

    def total(name: str, keep: Callable[[tuple[str, ...]], bool] = lambda k: True) -> float:
        return sum(v for k, v in totals.get(name, {}).items() if keep(k))

    # pigeon_recipients' labels sorted by name: (destination, outcome)
    def outcome(word: str) -> float:
        return total("pigeon_recipients", lambda k: len(k) == 2 and k[1] == word)

    return {
        "in": total("pigeon_messages_accepted"),
        "out": outcome("delivered"),
        "deferred": outcome("deferred"),
        "bounced": outcome("bounced") + outcome("expired"),
        "rejected": total("pigeon_smtp_rejections"),
        "connections": total("pigeon_smtp_connections", lambda k: bool(k) and k[0] in _SMTP_ROLES),
        "tls": total("pigeon_tls_sessions"),
    }


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole > 0 else None


class Sampler:
    """Counter deltas in two bounded rings (see the module contract)."""

    def __init__(self, read: Callable[[], Totals]) -> None:
        self._read = read
        self._last: dict[str, float] | None = None
        self._totals: Totals = {}
        #: (slot start, {series: count}), oldest first
        self.fine: deque[tuple[int, dict[str, float]]] = deque(maxlen=FINE_SLOTS)
        self.minutes: deque[tuple[int, dict[str, float]]] = deque(maxlen=MINUTE_SLOTS)

    def tick(self, now: float) -> None:
        try:
            totals = self._read()
        except Exception:  # a chart must never break the console
            log.warning("console: counters unavailable", exc_info=True)
            return
        flat = read_totals(totals)
        self._totals = totals
        last, self._last = self._last, flat
        if last is None:
            return
        delta = {k: max(0.0, flat[k] - last.get(k, 0.0)) for k in SERIES}
        _add(self.fine, int(now // INTERVAL) * INTERVAL, delta)
        _add(self.minutes, int(now // 60) * 60, delta)

    def snapshot(self, now: float) -> dict[str, Any]:
        flat = dict(self._last or read_totals(self._totals))
        final = flat["out"] + flat["deferred"] + flat["bounced"]
        codes = self._totals.get("pigeon_smtp_rejections", {})
        tls = self._totals.get("pigeon_tls_sessions", {})
        return {
            "interval": INTERVAL,
            "now": now,
            "fine": _series(self.fine, int(now // INTERVAL) * INTERVAL, INTERVAL, FINE_SLOTS),
            "minutes": _series(self.minutes, int(now // 60) * 60, 60, MINUTE_SLOTS),
            "totals": {k: int(v) for k, v in flat.items()},
            "rates": {
                "delivered": _ratio(flat["out"], final),
                "deferred": _ratio(flat["deferred"], final),
                "bounced": _ratio(flat["bounced"], final),
                "tls": _ratio(flat["tls"], flat["connections"]),
            },
            "rejections_by_code": {k[0]: int(v) for k, v in sorted(codes.items()) if k},
            "tls_versions": {k[0]: int(v) for k, v in sorted(tls.items()) if k},
        }

    async def run(self, clock: Callable[[], float], interval: float = INTERVAL) -> None:
        while True:
            self.tick(clock())
            await asyncio.sleep(interval)


def _add(ring: deque[tuple[int, dict[str, float]]], start: int, delta: dict[str, float]) -> None:
    if ring and ring[-1][0] == start:
        slot = ring[-1][1]
        for k, v in delta.items():
            slot[k] = slot.get(k, 0.0) + v
    else:
        ring.append((start, dict(delta)))


def _series(
    ring: deque[tuple[int, dict[str, float]]], current: int, width: int, slots: int
) -> list[dict[str, Any]]:
    """`slots` slots ending at `current`, oldest first, zeros where nothing was counted."""
    known = {start: counts for start, counts in ring}
    out = []
    for i in range(slots - 1, -1, -1):
        start = current - i * width
        counts = known.get(start, {})
        label = time.strftime("%H:%M:%S" if width < 60 else "%H:%M", time.gmtime(start))
        out.append({"t": start, "label": label, **{k: int(counts.get(k, 0)) for k in SERIES}})
    return out
