"""The reports' job: periods, what a run reports, queues and deletes; the sink it builds."""

from __future__ import annotations

import asyncio
import email
import email.policy
import gzip
import json
import xml.etree.ElementTree as ET

from report_samples import dmarc, tls

from pigeon.app.reportjob import ReportJob, build_report_sink, close_report_sink
from pigeon.config import load_config
from pigeon.reports.records import NullSink
from pigeon.reports.store import StoreSink
from pigeon.testing.fakedns import FakeResolver

DAY = 86400.0
ZONES = {
    "example.org": '_dmarc TXT "v=DMARC1; p=none; rua=mailto:dmarc@example.org"\n',
    "example.net": '_smtp._tls TXT "v=TLSRPTv1; rua=mailto:tls@example.net"\n',
}


def config(tmp_path, **reports):
    return load_config(
        None,
        {
            "hostname": "mx.rx.test",
            "data_dir": str(tmp_path),
            "reports": {"dmarc": True, "tls": True, **reports},
        },
    )


class Queue:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str], bytes]] = []

    async def submit(self, sender: str, recipients, message: bytes) -> str:
        self.sent.append((sender, list(recipients), message))
        return f"Q{len(self.sent)}"


def job(tmp_path, now: list[float], **reports) -> tuple[ReportJob, StoreSink, Queue]:
    cfg = config(tmp_path, **reports)
    sink = build_report_sink(cfg, tmp_path)
    assert isinstance(sink, StoreSink)
    queue = Queue()
    return (
        ReportJob(cfg, sink, FakeResolver(ZONES), queue.submit, clock=lambda: now[0]),
        sink,
        queue,
    )


def test_the_sink_is_null_when_reports_are_off(tmp_path):
    cfg = load_config(None, {"data_dir": str(tmp_path)})
    assert isinstance(build_report_sink(cfg, tmp_path), NullSink)
    close_report_sink(NullSink())  # nothing to close


def test_a_run_reports_the_ended_periods_only(tmp_path):
    now = [10 * DAY + 3600]
    reports, sink, queue = job(tmp_path, now)
    try:
        sink.dmarc(dmarc(when=9 * DAY + 10))  # yesterday
        sink.dmarc(dmarc(when=9 * DAY + 20))
        sink.dmarc(dmarc(when=10 * DAY + 10))  # today: not yet
        sink.tls(tls(when=9 * DAY + 30))
        result = asyncio.run(reports.send(now=False))
        assert (result["dmarc"], result["tls"], result["records"]) == (1, 1, 3)
        assert result["queued"] == ["Q1", "Q2"]
        (sender, to, raw), (_, to_tls, _) = queue.sent
        assert sender == "noreply-reports@mx.rx.test"
        assert (to, to_tls) == (["dmarc@example.org"], ["tls@example.net"])
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        attachment = list(msg.iter_attachments())[0]
        assert (
            attachment.get_filename()
            == f"mx.rx.test!example.org!{int(9 * DAY)}!{int(10 * DAY)}.xml.gz"
        )
        # What was reported is gone; today's record waits.
        assert len(sink.store.due("dmarc", 1e12)) == 1
        result = asyncio.run(reports.send(now=False))
        assert result["records"] == 0 and len(queue.sent) == 2
        # --now: the current period too, up to this instant.
        result = asyncio.run(reports.send(now=True))
        assert (result["dmarc"], result["records"]) == (1, 1)
        msg = email.message_from_bytes(queue.sent[-1][2], policy=email.policy.default)
        end = int(now[0])
        assert (
            list(msg.iter_attachments())[0]
            .get_filename()
            .endswith(f"!{int(10 * DAY)}!{end}.xml.gz")
        )
    finally:
        sink.close()


def test_records_of_a_domain_without_destination_are_dropped_with_a_note(tmp_path):
    now = [DAY]
    reports, sink, queue = job(tmp_path, now)
    try:
        sink.dmarc(dmarc(when=10.0, domain="nowhere.test"))
        result = asyncio.run(reports.send(now=True))
        assert result["dmarc"] == 0 and queue.sent == []
        assert any("nowhere.test" in note for note in result["notes"])
        assert sink.store.due("dmarc", 1e12) == []
    finally:
        sink.close()


def test_a_kind_that_is_off_is_neither_stored_nor_reported(tmp_path):
    now = [DAY]
    reports, sink, queue = job(tmp_path, now, tls=False)
    try:
        sink.tls(tls(when=10.0))
        sink.dmarc(dmarc(when=10.0))
        result = asyncio.run(reports.send(now=True))
        assert (result["dmarc"], result["tls"]) == (1, 0)
    finally:
        sink.close()


def test_the_job_runs_at_the_end_of_each_period_and_stops(tmp_path):
    now = [DAY - 0.05]  # the period ends 50 ms from "now"
    reports, sink, queue = job(tmp_path, now, interval=DAY)

    async def scenario() -> None:
        stop = asyncio.Event()
        sink.dmarc(dmarc(when=DAY - 100))
        task = asyncio.create_task(reports.run(stop))
        await asyncio.sleep(0)
        now[0] = DAY + 1  # the clock passes the boundary while the job sleeps
        for _ in range(200):  # bounded: 10 s
            if queue.sent:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)

    try:
        asyncio.run(scenario())
        assert len(queue.sent) == 1
    finally:
        sink.close()


def test_records_are_read_a_page_at_a_time_and_counted_alike(tmp_path, monkeypatch):
    import pigeon.app.reportjob as J

    monkeypatch.setattr(J, "PAGE", 3)
    now = [DAY]
    reports, sink, queue = job(tmp_path, now)
    try:
        for i in range(7):
            sink.dmarc(dmarc("192.0.2.1" if i % 2 else "192.0.2.2", when=10.0 + i))
        for i in range(4):
            sink.tls(
                tls(i < 3, result_type=None if i < 3 else "certificate-expired", when=20.0 + i)
            )
        reads: list[int] = []
        due = sink.store.due

        def counted(*args, **kwargs):
            page = due(*args, **kwargs)
            reads.append(len(page))
            return page

        monkeypatch.setattr(sink.store, "due", counted)
        result = asyncio.run(reports.send(now=True))
        assert (result["dmarc"], result["tls"], result["records"]) == (1, 1, 11)
        assert reads == [3, 3, 1, 0, 3, 1, 0]
        dmarc_msg = email.message_from_bytes(queue.sent[0][2], policy=email.policy.default)
        xml = gzip.decompress(list(dmarc_msg.iter_attachments())[0].get_content())
        counts = {
            r.findtext("row/source_ip"): int(r.findtext("row/count"))
            for r in ET.fromstring(xml).iter("record")
        }
        assert counts == {"192.0.2.1": 3, "192.0.2.2": 4}
        tls_msg = email.message_from_bytes(queue.sent[1][2], policy=email.policy.default)
        report = json.loads(gzip.decompress(list(tls_msg.iter_attachments())[0].get_content()))
        assert report["policies"][0]["summary"] == {
            "total-successful-session-count": 3,
            "total-failure-session-count": 1,
        }
        monkeypatch.undo()
        assert sink.store.due("dmarc", 1e12) == [] and sink.store.due("tls", 1e12) == []
    finally:
        sink.close()


def test_records_stored_during_a_run_are_kept_for_the_next(tmp_path):
    now = [DAY]
    reports, sink, queue = job(tmp_path, now)
    try:
        sink.dmarc(dmarc(when=10.0))
        sink.flush()
        ((last, _),) = sink.store.due("dmarc", 1e12)
        sink.store.append("dmarc", [dmarc("192.0.2.99", when=11.0)])  # another process, late
        sink.store.delete_through("dmarc", DAY, last)
        assert [r.source_ip for _, r in sink.store.due("dmarc", 1e12)] == ["192.0.2.99"]
    finally:
        sink.close()
