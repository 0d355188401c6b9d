"""reports.db and the sink: records written behind, read back, deleted; best effort."""

from __future__ import annotations

import os
import stat
import threading

from report_samples import dmarc, tls

from pigeon.reports.store import ReportStore, StoreSink


def test_records_are_written_behind_and_read_back(tmp_path):
    sink = StoreSink(tmp_path / "reports.db", flush_interval=3600)
    try:
        sink.dmarc(dmarc(when=10.0))
        sink.dmarc(dmarc("192.0.2.8", when=20.0, reason="forwarded"))
        sink.tls(tls(False, result_type="certificate-expired", when=15.0))
        assert sink.store.due("dmarc", 100.0) == []  # nothing written yet: no I/O in the caller
        sink.flush()
        rows = sink.store.due("dmarc", 100.0)
        assert [r for _, r in rows] == [
            dmarc(when=10.0),
            dmarc("192.0.2.8", when=20.0, reason="forwarded"),
        ]
        assert [r for _, r in sink.store.due("dmarc", 15.0)] == [dmarc(when=10.0)]
        assert [r for _, r in sink.store.due("tls", 100.0)] == [
            tls(False, result_type="certificate-expired", when=15.0)
        ]
        sink.store.delete([i for i, _ in rows])
        assert sink.store.due("dmarc", 100.0) == []
        assert len(sink.store.due("tls", 100.0)) == 1
    finally:
        sink.close()
    assert stat.S_IMODE(os.stat(tmp_path / "reports.db").st_mode) == 0o600


def test_the_writer_thread_flushes_by_itself(tmp_path):
    sink = StoreSink(tmp_path / "reports.db", flush_interval=0.01)
    try:
        sink.tls(tls())
        done = threading.Event()
        for _ in range(500):  # bounded: 5 s at most
            if sink.store.due("tls", 1e12):
                done.set()
                break
            done.wait(0.01)
        assert done.is_set()
    finally:
        sink.close()


def test_close_writes_what_is_pending_and_a_kind_that_is_off_is_dropped(tmp_path):
    sink = StoreSink(tmp_path / "reports.db", dmarc=False, flush_interval=3600)
    sink.dmarc(dmarc())
    sink.tls(tls())
    sink.close()
    store = ReportStore(tmp_path / "reports.db")
    try:
        assert store.due("dmarc", 1e12) == []
        assert len(store.due("tls", 1e12)) == 1
    finally:
        store.close()


def test_past_max_pending_records_are_dropped_and_counted(tmp_path, caplog):
    sink = StoreSink(tmp_path / "reports.db", flush_interval=3600, max_pending=2)
    try:
        for _ in range(5):
            sink.tls(tls())
        sink.flush()
        assert len(sink.store.due("tls", 1e12)) == 2
        assert "3 report record(s) dropped" in caplog.text
    finally:
        sink.close()


def test_a_database_that_cannot_be_written_loses_the_batch_and_never_raises(tmp_path, caplog):
    (tmp_path / "reports.db").mkdir()  # not a file: cannot be opened
    sink = StoreSink(tmp_path / "reports.db", flush_interval=3600)
    sink.dmarc(dmarc())
    sink.flush()
    sink.close()
    assert "report record(s) lost" in caplog.text


def test_a_damaged_file_is_started_afresh(tmp_path, caplog):
    (tmp_path / "reports.db").write_bytes(b"this is not a database" * 100)
    store = ReportStore(tmp_path / "reports.db")
    try:
        store.append("tls", [tls()])
        assert len(store.due("tls", 1e12)) == 1
    finally:
        store.close()
    assert "starting it afresh" in caplog.text


def test_a_row_that_does_not_decode_is_skipped(tmp_path, caplog):
    store = ReportStore(tmp_path / "reports.db")
    try:
        store.append("tls", [tls()])
        store._open().execute("UPDATE records SET data = '{\"bogus\": 1}'")
        ((row_id, record),) = store.due("tls", 1e12)
        assert record is None
        store.delete([row_id])
        assert store.due("tls", 1e12) == []
    finally:
        store.close()
    assert "skipped" in caplog.text
