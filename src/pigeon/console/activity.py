"""Recent deliveries and rejections, kept in memory for the console.

Contract:
  * `Activity` keeps the last `limit` delivery outcomes and the last
    `limit` SMTP-time rejections in two deques with a maximum length
    (CONTRIBUTING.md, rule 4); `deliveries()` and `rejections()` return
    them newest first, `top_reasons(n)` the most frequent rejection
    replies among those kept.
  * Its source is the mail log (obs/maillog.py), the one place where both
    already exist with their structured fields: `ActivityHandler` is a
    `logging.Handler` attached to the "pigeon.mail" logger of this process
    (`attach()`, `detach()`). A delivery is a record whose fields carry
    `to` and a `status` of sent, deferred, bounced or expired (the queue
    manager writes one per recipient once the outcome is durable:
    qmgr/settle.py), with its relay, dsn, delay and the remote reply (the
    record's detail). A rejection is a record whose fields say
    `event: reject` (stage, client, reply, sender, recipient). Other lines
    are ignored.
  * `emit` never raises and never blocks: it copies a few strings into a
    deque. Values from the network stay plain text here; the templates
    escape them.
  * GET /activity (`activity_pages`) shows both lists, newest first,
    server-rendered: time, queue ID (a link while it is queued), outcome,
    recipient, relay, DSN and the remote reply; stage, client, sender,
    recipient and reply of each rejection.
  * Coverage: the mail log lines of this process only. With `workers > 1`
    the rejections answered by the workers, and the local copies they
    write at the accept, are not seen (docs/console.md, "Activity").
    Lines below the logger's level are not written, so `[log] level =
    "warning"` leaves the lists empty.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from typing import Any

from aiohttp import web

from pigeon.console.pages import Page, render
from pigeon.obs.maillog import MAIL_LOGGER

__all__ = ["Activity", "ActivityHandler", "DEFAULT_LIMIT", "activity_pages"]

DEFAULT_LIMIT = 200
_OUTCOMES = {
    "sent": "delivered",
    "deferred": "deferred",
    "bounced": "bounced",
    "expired": "expired",
}
#: Longest text kept of one field (a remote reply can be long).
_MAX_TEXT = 500


def _text(value: Any) -> str:
    return "" if value is None else str(value)[:_MAX_TEXT]


class Activity:
    """The two rings (see the module contract)."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._deliveries: deque[dict[str, Any]] = deque(maxlen=limit)
        self._rejections: deque[dict[str, Any]] = deque(maxlen=limit)

    def record(self, fields: dict[str, Any], queue_id: str, detail: Any, when: float) -> None:
        """Keep one mail-log record if it is a delivery outcome or a rejection."""
        if fields.get("event") == "reject":
            self._rejections.append(
                {
                    "time": when,
                    "queue_id": _text(queue_id),
                    "stage": _text(fields.get("stage")),
                    "client": f"{_text(fields.get('client_name'))}[{_text(fields.get('client_ip'))}]",
                    "reply": _text(fields.get("reply")),
                    "code": _text(fields.get("reply"))[:3],
                    "sender": fields.get("from"),
                    "recipient": fields.get("to"),
                }
            )
            return
        outcome = _OUTCOMES.get(_text(fields.get("status")))
        if outcome is None or "to" not in fields:
            return
        self._deliveries.append(
            {
                "time": when,
                "queue_id": _text(queue_id),
                "outcome": outcome,
                "recipient": _text(fields.get("to")),
                "relay": _text(fields.get("relay")),
                "dsn": _text(fields.get("dsn")),
                "delay": fields.get("delay"),
                "reply": _text(detail),
            }
        )

    def deliveries(self, limit: int | None = None) -> list[dict[str, Any]]:
        return list(reversed(self._deliveries))[:limit]

    def rejections(self, limit: int | None = None) -> list[dict[str, Any]]:
        return list(reversed(self._rejections))[:limit]

    def top_reasons(self, n: int = 5) -> list[tuple[str, int]]:
        """The most frequent rejection replies kept, with their counts."""
        return Counter(r["reply"] for r in self._rejections).most_common(n)


class ActivityHandler(logging.Handler):
    """Feeds `Activity` from the mail logger's records (module contract)."""

    def __init__(self, activity: Activity, logger: logging.Logger | None = None) -> None:
        super().__init__(logging.INFO)
        self.activity = activity
        self._logger = logger if logger is not None else logging.getLogger(MAIL_LOGGER)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = getattr(record, "fields", None)
            if isinstance(fields, dict):
                queue_id = getattr(record, "queue_id", "")
                detail = getattr(record, "detail", None)
                self.activity.record(fields, queue_id, detail, record.created or time.time())
        except Exception:  # a console's list must never break the mail log
            self.handleError(record)

    def attach(self) -> None:
        if self not in self._logger.handlers:
            self._logger.addHandler(self)

    def detach(self) -> None:
        self._logger.removeHandler(self)


def activity_pages(activity: Activity | None) -> list[Page]:
    async def page(request: web.Request) -> web.StreamResponse:
        return render(
            request,
            "activity.html",
            enabled=activity is not None,
            deliveries=activity.deliveries() if activity is not None else [],
            rejections=activity.rejections() if activity is not None else [],
            limit=activity.limit if activity is not None else 0,
        )

    return [Page("GET", "/activity", page, nav="Activity")]
