"""QueueStore: the store conformance suite, IDs, failure paths, crash recovery."""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import threading
import time

import pytest

from pigeon.queue.api import QueueBackend
from pigeon.queue.health import store_error
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.spool import SPILL_THRESHOLD, _IdGenerator
from pigeon.queue.store import QueueStore
from pigeon.testing.commit_crash import commit_then_kill
from pigeon.testing.storage import content_bytes, content_file
from pigeon.vocab import CorruptEntry, QueueState, StoreError


def env(qid: str, rcpt: str = "bob@example.test") -> Envelope:
    return Envelope(qid, "alice@example.test", [Recipient(rcpt)], received_at=time.time())


def commit(store: QueueStore, body: bytes = b"Subject: t\r\n\r\nhi\r\n") -> str:
    sp = store.new_spool()
    sp.write(body)
    store.commit(sp, env(sp.queue_id))
    return sp.queue_id


# The conformance suite runs against every backend in test_backend_conformance.py.


def test_the_store_is_a_queue_backend(store):
    backend: QueueBackend = store  # mypy checks the structure; this checks the wiring
    assert backend.node == "local"


def test_queue_ids_are_short_sortable_unique_and_filename_safe():
    gen = _IdGenerator()
    ids = [gen.next() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{15}", i) for i in ids)
    # Sorted by creation: the time+counter prefix is monotonic within a process.
    prefixes = [i[:12] for i in ids]
    assert prefixes == sorted(prefixes)


def test_200_concurrent_commits_use_fewer_transactions(store):
    barrier = threading.Barrier(20)
    ids: list[str] = []

    def worker():
        barrier.wait()
        for _ in range(10):
            ids.append(commit(store))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = store.stats()
    assert len(set(ids)) == 200 and st["commits"] == 200
    assert st["batches"] < 200, st
    assert store.counts()["incoming"] == 200


def test_write_after_commit_and_commit_twice_are_refused(store):
    sp = store.new_spool()
    sp.write(b"x\r\n")
    store.commit(sp, env(sp.queue_id))
    with pytest.raises(StoreError):
        sp.write(b"more")
    with pytest.raises(StoreError):
        store.commit(sp, env(sp.queue_id))
    sp.discard()  # no-op after commit
    assert content_bytes(store, sp.queue_id) == b"x\r\n"


def test_mismatched_envelope_is_refused_and_leaves_nothing(store):
    sp = store.new_spool()
    sp.write(b"x\r\n")
    with pytest.raises(StoreError):
        store.commit(sp, env("SOMETHINGELSE00"))
    assert not os.path.exists(sp.path) and store.list() == []


def test_failed_link_fails_only_that_request_and_leaves_no_record(store):
    # A spilled spool is moved from tmp/ to msg/ at commit (in-memory spools
    # are written to msg/ directly: tests/unit/queue/test_spool.py).
    bad = store.new_spool()
    bad.write(b"x" * SPILL_THRESHOLD + b"\r\n")
    os.unlink(bad.path)  # the move will fail with ENOENT
    good = store.new_spool()
    good.write(b"y\r\n")
    f_bad = store.commit_async(bad, env(bad.queue_id))
    f_good = store.commit_async(good, env(good.queue_id))
    with pytest.raises(StoreError) as ei:
        f_bad.result(10)
    assert not ei.value.disk_full
    f_good.result(10)
    assert [e.queue_id for e in store.list()] == [good.queue_id]
    assert not content_file(store, bad.queue_id).exists()
    assert store.stats()["failed"] == 1


def test_db_failure_unlinks_committed_files(store, tmp_path):
    sp = store.new_spool()
    sp.write(b"x\r\n")
    # A row with the same ID already exists: the INSERT fails (IntegrityError).
    db = sqlite3.connect(tmp_path / "queue" / "queue.db")
    db.execute("INSERT INTO queue VALUES (?, 'hold', 0, '{}')", (sp.queue_id,))
    db.commit()
    db.close()
    with pytest.raises(StoreError):
        store.commit(sp, env(sp.queue_id))
    assert not content_file(store, sp.queue_id).exists()
    assert not os.path.exists(sp.path)


def test_disk_full_classification():
    assert store_error("x", OSError(errno.ENOSPC, "full")).disk_full
    assert store_error("x", OSError(errno.EDQUOT, "quota")).disk_full
    assert not store_error("x", OSError(errno.EIO, "io")).disk_full
    assert store_error("x", OSError(errno.EIO, "io")).storage_fault
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL
    assert store_error("x", full).disk_full and store_error("x", full).storage_fault
    locked = sqlite3.OperationalError("database is locked")
    assert not store_error("x", locked).storage_fault


def test_corrupt_envelope_is_quarantined_not_raised_further(store, tmp_path):
    qid = commit(store)
    db = sqlite3.connect(tmp_path / "queue" / "queue.db")
    db.execute("UPDATE queue SET envelope='{not json' WHERE queue_id=?", (qid,))
    db.commit()
    db.close()
    with pytest.raises(CorruptEntry):
        store.load(qid)
    assert store.counts()["corrupt"] == 1
    assert store.list(QueueState.CORRUPT)[0].envelope is None
    assert content_bytes(store, qid) == b"Subject: t\r\n\r\nhi\r\n"  # quarantined, never deleted


def test_load_of_an_entry_whose_content_vanished_quarantines_it(store):
    qid = commit(store)
    os.unlink(content_file(store, qid))
    with pytest.raises(CorruptEntry):
        store.load(qid)
    assert store.states([qid]) == {qid: QueueState.CORRUPT}
    with pytest.raises(StoreError, match=f"queue_id={qid} content: .*No such file"):
        store.content(qid).open()


def test_row_without_content_becomes_corrupt_on_recover(store):
    qid = commit(store)
    os.unlink(content_file(store, qid))
    rep = store.recover()
    assert rep.missing_content == [qid]
    assert store.counts()["corrupt"] == 1 and store.due(time.time() + 1, 10) == []


def test_recover_spares_spools_being_written(store):
    sp = store.new_spool()
    sp.write(b"in progress\r\n")
    rep = store.recover()
    assert rep.tmp_removed == []
    store.commit(sp, env(sp.queue_id))
    assert store.counts()["incoming"] == 1


def test_due_order_update_and_remove(store):
    a, b = commit(store), commit(store)
    now = time.time()
    e = store.load(a)
    e.recipients[0].diagnostic = "dsn=4.4.0 later"
    store.update(e, QueueState.DEFERRED, now + 100)
    assert store.due(now + 1, 10) == [b]
    assert store.due(now + 101, 10) == [b, a]
    assert store.next_retry() == now + 100
    assert store.load(a).recipients[0].diagnostic == "dsn=4.4.0 later"
    store.move([b], QueueState.HOLD, from_states=(QueueState.INCOMING,))
    assert store.due(now + 1000, 10) == [a]
    store.remove_many([a])
    assert store.counts() == {
        "incoming": 0,
        "active": 0,
        "deferred": 0,
        "hold": 1,
        "corrupt": 0,
        "capture": 0,
    }


def test_no_sqlite_error_leaves_the_store(store, tmp_path):
    """A database fault in any call is a StoreError (the manager catches no sqlite3.Error)."""
    qid = commit(store)
    db = sqlite3.connect(tmp_path / "queue" / "queue.db")
    db.executescript(
        "CREATE TRIGGER no_update BEFORE UPDATE ON queue "
        "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;"
        "CREATE TRIGGER no_delete BEFORE DELETE ON queue "
        "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;"
    )
    db.close()
    calls = [
        lambda: store.claim([qid]),
        lambda: store.move([qid], QueueState.HOLD, from_states=(QueueState.INCOMING,)),
        lambda: store.update(store.load(qid), QueueState.DEFERRED, 0.0),
        lambda: store.remove_many([qid]),
    ]
    for call in calls:
        with pytest.raises(StoreError) as ei:
            call()
        assert isinstance(ei.value.__cause__, sqlite3.Error)
    assert store.states([qid]) == {qid: QueueState.INCOMING}  # nothing half-done
    db = sqlite3.connect(tmp_path / "queue" / "queue.db")
    db.execute("DROP TABLE queue")  # every read fails now ("no such table")
    db.close()
    reads = [
        lambda: store.due(time.time()),
        store.next_retry,
        lambda: store.load(qid),
        store.counts,
        store.list,
        lambda: store.entry(qid),
        lambda: store.states([qid]),
        store.recover,
    ]
    for call in reads:
        with pytest.raises(StoreError) as ei:
            call()
        assert isinstance(ei.value.__cause__, sqlite3.Error)
    store.close()
    with pytest.raises(StoreError, match="not open"):
        store.due(time.time())


def test_sigkill_during_commits_loses_no_acknowledged_message(tmp_path):
    root = tmp_path / "queue"
    acked = commit_then_kill(str(root))
    assert len(acked) >= 150
    store = QueueStore(root)
    store.open()
    try:
        rep = store.recover()
        listed = {e.queue_id for e in store.list(QueueState.INCOMING)}
        assert set(acked) <= listed
        for qid in acked:
            assert content_bytes(store, qid).startswith(b"Subject: " + qid.encode())
            assert store.load(qid).queue_id == qid
        # After recovery disk and database agree exactly.
        assert not any((root / "tmp").iterdir())
        assert {p.name for p in (root / "msg").iterdir()} == listed
        assert rep.missing_content == []
    finally:
        store.close()
