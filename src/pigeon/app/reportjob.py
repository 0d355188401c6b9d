"""The aggregate reports' job: once per period, the stored records become report mail in our queue.

Contract:
  * `build_report_sink(config, data_dir)` is the `ReportSink` every process
    hands to its DMARC check and its SMTP client: a `StoreSink` over
    `<data_dir>/reports.db` when `[reports] dmarc` or `tls` is on (a kind
    that is off is dropped by the sink), else a `NullSink`.
    `close_report_sink(sink)` writes what is pending and stops its thread
    (the lifecycle's `close`).
  * `ReportJob` runs in the process that owns the queue (the "full" role),
    as one task of the lifecycle (`run(stop)`), ended when the stop begins
    (cancelled: a report being queued may then be queued again at the next
    run). Periods end on multiples of `[reports] interval` since the Unix
    epoch (86400: 00:00 UTC); at each end `send(now=False)` reports every
    record received before it. `send(now=True)` (`pigeon reports send
    --now`) reports everything received up to this instant. One run at a
    time.
  * A run: the sink flushed, then per kind that is on: the records due read
    and grouped in a thread, `PAGE` rows at a time (memory grows with the
    distinct report rows, not with the messages), the reports made (pigeon.reports.make: destinations
    looked up now), each queued through `submit` (a local submission:
    durable before it returns, delivered like any mail) from `[reports]
    from`, or, for a TLS-RPT https: rua (RFC 8460 §3), POSTed there by
    `post` (delivery/httpspost.py: gzipped JSON as application/tlsrpt+gzip,
    once, no retry), the notes logged, and the records deleted. Best effort: a report
    that cannot be queued is logged and its records are deleted all the
    same (no report is worth a growing store), and so are the records of a
    domain that has no destination now.
  * `send` returns {"dmarc": reports queued, "tls": reports queued,
    "records": records read, "notes": [...], "queued": [queue ids],
    "posted": [the URLs that took a report]}, the
    answer of the control socket's "reports" operation.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pigeon.config.schema import Config
from pigeon.dns.api import Resolver
from pigeon.hooks.api import Submit
from pigeon.reports.destinations import SameOrg, same_tree
from pigeon.reports.dmarc import DmarcGroup, group_dmarc
from pigeon.reports.make import OutgoingReport, Reporter, make_dmarc_reports, make_tls_reports
from pigeon.reports.records import DmarcRecord, NullSink, ReportSink, TlsRecord
from pigeon.reports.store import FILE_NAME, Kind, StoreSink
from pigeon.reports.tlsrpt import TlsPolicyGroup, group_tls

__all__ = ["ReportJob", "build_report_sink", "close_report_sink"]

log = logging.getLogger("pigeon.reports")


def build_report_sink(config: Config, data_dir: Path) -> ReportSink:
    """The sink of this process (module contract)."""
    if not config.reports.enabled:
        return NullSink()
    return StoreSink(Path(data_dir) / FILE_NAME, dmarc=config.reports.dmarc, tls=config.reports.tls)


def close_report_sink(sink: ReportSink) -> None:
    if isinstance(sink, StoreSink):
        sink.close()


#: Records read from reports.db at a time.
PAGE = 10_000

#: RFC 8460 §5.3: the media type of a gzipped TLS report.
TLSRPT_GZIP = "application/tlsrpt+gzip"

#: POST (url, body, content type) over HTTPS; raises when no server took it
#: (delivery/httpspost.py `post`, bound to our resolver and CAs by app/roles.py).
Post = Callable[[str, bytes, str], Awaitable[None]]


@dataclass
class _Due:
    """What one run read of one kind: the count, the last row id, the groups."""

    count: int = 0
    last_id: int = 0
    first: float = math.inf  # the oldest record's time
    groups: dict[str, DmarcGroup] = field(default_factory=dict)
    tls_groups: dict[str, list[TlsPolicyGroup]] = field(default_factory=dict)


class ReportJob:
    """The periodic reports of one server (module contract)."""

    def __init__(
        self,
        config: Config,
        sink: StoreSink,
        resolver: Resolver,
        submit: Submit,
        *,
        clock: Callable[[], float] = time.time,
        same_org: SameOrg = same_tree,
        post: Post | None = None,
    ) -> None:
        settings = config.reports
        self.interval = settings.interval
        wanted: tuple[tuple[Kind, bool], ...] = (("dmarc", settings.dmarc), ("tls", settings.tls))
        self.kinds: tuple[Kind, ...] = tuple(k for k, on in wanted if on)
        self.who = Reporter(
            name=config.hostname,
            org_name=settings.org_name or config.hostname,
            email=settings.from_address(config.hostname),
            contact=settings.contact,
        )
        self.sink = sink
        self.resolver = resolver
        self.submit = submit
        self.clock = clock
        self.same_org = same_org
        self.post = post
        self._lock = asyncio.Lock()

    def period_start(self, when: float) -> float:
        """The start of the period `when` falls in (periods end on multiples of the interval)."""
        return math.floor(when / self.interval) * self.interval

    async def run(self, stop: asyncio.Event) -> None:
        """Send the reports at the end of every period until `stop` is set."""
        while not stop.is_set():
            now = self.clock()
            wait = self.period_start(now) + self.interval - now
            try:
                await asyncio.wait_for(stop.wait(), max(wait, 0.0) + 0.001)
                return
            except TimeoutError:
                pass
            try:
                await self.send(now=False)
            except Exception:  # a bug must not end the server; the next period tries again
                log.exception("aggregate reports failed")

    async def for_operator(self, now: bool = False) -> dict[str, Any]:
        return await self.send(now=now)

    async def send(self, *, now: bool) -> dict[str, Any]:
        """One run (module contract)."""
        async with self._lock:
            instant = self.clock()
            cut = instant if now else self.period_start(instant)
            await asyncio.to_thread(self.sink.flush)
            result: dict[str, Any] = {
                "dmarc": 0,
                "tls": 0,
                "records": 0,
                "notes": [],
                "queued": [],
                "posted": [],
            }
            for kind in self.kinds:
                due = await asyncio.to_thread(self._collect, kind, cut)
                if due.count == 0:
                    continue
                result["records"] += due.count
                if due.groups or due.tls_groups:
                    reports, notes = await self._make(kind, due, cut)
                    for note in notes:
                        log.warning("reports: %s", note)
                    result["notes"] += notes
                    for report in reports:
                        if report.url:  # counted apart: "posted", not queued
                            if await self._post(report):
                                result["posted"].append(report.url)
                            continue
                        queue_id = await self._queue(report)
                        if queue_id is not None:
                            result[kind] += 1
                            result["queued"].append(queue_id)
                await asyncio.to_thread(self.sink.store.delete_through, kind, cut, due.last_id)
            return result

    def _collect(self, kind: Kind, cut: float) -> _Due:
        """The records of `kind` due at `cut`, grouped a page at a time (blocking):
        memory grows with the distinct rows, not with the messages."""
        due = _Due()
        while True:
            page = self.sink.store.due(kind, cut, after=due.last_id, limit=PAGE)
            if not page:
                return due
            due.count += len(page)
            due.last_id = page[-1][0]
            records = [r for _, r in page if r is not None]
            if not records:
                continue
            due.first = min(due.first, min(r.when for r in records))
            if kind == "dmarc":
                group_dmarc([r for r in records if isinstance(r, DmarcRecord)], due.groups)
            else:
                group_tls([r for r in records if isinstance(r, TlsRecord)], due.tls_groups)

    async def _make(
        self, kind: Kind, due: _Due, cut: float
    ) -> tuple[list[OutgoingReport], list[str]]:
        begin = int(self.period_start(due.first))
        end = int(cut)
        if kind == "dmarc":
            return await make_dmarc_reports(
                due.groups, self.resolver, self.who, begin, end, same_org=self.same_org
            )
        return await make_tls_reports(due.tls_groups, self.resolver, self.who, begin, end)

    async def _post(self, report: OutgoingReport) -> bool:
        """POST a TLS-RPT report to its https: rua (RFC 8460 §3); False: it was
        not taken (logged; best effort, as a report that cannot be queued)."""
        if self.post is None:
            log.warning(
                "TLS-RPT report for %s not posted to %s: no poster", report.domain, report.url
            )
            return False
        try:
            await self.post(report.url, report.message, TLSRPT_GZIP)
        except Exception as exc:  # PostError; anything else must not end the run
            log.error(
                "TLS-RPT report for %s (%s) not posted to %s: %s",
                report.domain,
                report.filename,
                report.url,
                exc,
            )
            return False
        log.info(
            "TLS-RPT report for %s (%d session(s)) posted to %s",
            report.domain,
            report.messages,
            report.url,
        )
        return True

    async def _queue(self, report: OutgoingReport) -> str | None:
        try:
            queue_id = await self.submit(self.who.email, list(report.recipients), report.message)
        except Exception as exc:  # the store is full or failing: this report is lost
            log.error(
                "%s report for %s (%s) could not be queued: %s",
                report.kind,
                report.domain,
                report.filename,
                exc,
            )
            return None
        log.info(
            "%s: %s report for %s (%d %s) queued to %s",
            queue_id,
            "DMARC" if report.kind == "dmarc" else "TLS-RPT",
            report.domain,
            report.messages,
            "message(s)" if report.kind == "dmarc" else "session(s)",
            ", ".join(report.recipients),
        )
        return queue_id
