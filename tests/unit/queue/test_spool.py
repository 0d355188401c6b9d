"""Spools in memory and spilled to tmp/, the two commit paths, Rule 3 inside
a batch, recovery of msg/ files without a row, remove_many, queue IDs."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import threading
import time

import pytest

import pigeon.queue.spool as spool_mod
import pigeon.queue.store as store_mod
from pigeon import msgfile
from pigeon.msgfile import read_message
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.spool import NEW_ID, SPILL_THRESHOLD
from pigeon.queue.store import QueueStore, StoreError

BIG = SPILL_THRESHOLD + 1000


def env(qid: str) -> Envelope:
    return Envelope(
        qid, "alice@example.test", [Recipient("bob@example.test")], received_at=time.time()
    )


@pytest.fixture(params=[True, False], ids=["fsync", "nofsync"])
def store(request, tmp_path):
    s = QueueStore(tmp_path / "queue", fsync=request.param)
    s.open()
    yield s
    s.close()


def content(n: int) -> bytes:
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"
    return (line * (n // len(line) + 1))[:n]


def files(store: QueueStore, sub: str) -> set[str]:
    return {p.name for p in (store.root / sub).iterdir()}


def as_committed(store: QueueStore, qid: str, data: bytes) -> bytes:
    """`data` as the committer writes it to msg/<qid>: this store's preamble first."""
    raw = json.dumps(env(qid).to_dict()).encode()
    return msgfile.encode(store.store_id, raw) + data


def write_in_pieces(sp, data: bytes, piece: int = 8192) -> None:
    for i in range(0, len(data), piece):
        sp.write(data[i : i + piece])


def in_one_batch(store: QueueStore, first, rest):
    """Submit `first`, let the committer take it alone, then queue `rest` so
    they form the next batch together. Returns the futures, in order."""
    with store._batch_lock:  # the committer waits here
        futures = [store.commit_async(*first)]
        deadline = time.monotonic() + 10
        while not store._requests.empty():  # it has taken `first`
            assert time.monotonic() < deadline
            time.sleep(0.001)
        time.sleep(0.05)  # ...and is now waiting for the lock
        futures += [store.commit_async(*r) for r in rest]
    return futures


# --- in memory ------------------------------------------------------------------


def test_small_spool_stays_in_memory_until_commit(store):
    sp = store.new_spool()
    data = content(SPILL_THRESHOLD)  # exactly the threshold: still memory
    write_in_pieces(sp, data)
    assert sp.in_memory and sp.size == len(data)
    assert files(store, "tmp") == set() and files(store, "msg") == set()
    assert sp.head(100) == data[:100] and sp.head() == data[:65536]
    assert sp.queue_id in store._live  # recover() must know it
    store.commit(sp, env(sp.queue_id))
    path = store.content_path(sp.queue_id)
    assert read_message(path) == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert files(store, "tmp") == set()
    assert [e.queue_id for e in store.list()] == [sp.queue_id]
    assert sp.queue_id not in store._live and sp._buf is None  # memory released


def test_empty_spool_commits_an_empty_file(store):
    sp = store.new_spool()
    store.commit(sp, env(sp.queue_id))
    assert read_message(store.content_path(sp.queue_id)) == b""


def test_discard_in_memory_leaves_nothing_and_is_final(store):
    sp = store.new_spool()
    sp.write(b"partial\r\n")
    sp.discard()
    sp.discard()
    assert sp.queue_id not in store._live
    with pytest.raises(StoreError):
        sp.write(b"more")
    with pytest.raises(StoreError):
        store.commit(sp, env(sp.queue_id))
    assert files(store, "tmp") == set() and files(store, "msg") == set()
    assert store.list() == []


# --- spilled to tmp/ ----------------------------------------------------------------


def test_spool_spills_past_the_threshold_and_commits_by_link(store):
    sp = store.new_spool()
    data = content(BIG)
    write_in_pieces(sp, data, 4096)
    assert not sp.in_memory and sp._buf is None  # no copy left in memory
    assert sp.size == len(data)
    assert files(store, "tmp") == {sp.queue_id}
    assert stat.S_IMODE(sp.path.stat().st_mode) == 0o600
    assert sp.head(10) == data[:10] and sp.head() == data[:65536]
    store.commit(sp, env(sp.queue_id))
    assert read_message(store.content_path(sp.queue_id)) == data
    assert files(store, "tmp") == set()
    assert store.content_path(sp.queue_id).stat().st_nlink == 1
    assert [e.queue_id for e in store.list()] == [sp.queue_id]


def test_one_write_bigger_than_the_threshold_spills(store):
    sp = store.new_spool()
    sp.write(b"Received: x\r\n")
    sp.write(content(BIG))
    assert not sp.in_memory
    assert sp.head(13) == b"Received: x\r\n"
    store.commit(sp, env(sp.queue_id))
    assert read_message(store.content_path(sp.queue_id)) == b"Received: x\r\n" + content(BIG)


def test_discard_spilled_unlinks_the_tmp_file(store):
    sp = store.new_spool()
    sp.write(content(BIG))
    assert sp.path.exists()
    sp.discard()
    sp.discard()
    assert not sp.path.exists() and sp.queue_id not in store._live
    assert files(store, "tmp") == set() and files(store, "msg") == set()


def test_spill_on_a_full_disk_fails_the_spool_which_can_only_be_discarded(store, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    sp = store.new_spool()
    sp.write(b"head\r\n")
    monkeypatch.setattr(spool_mod, "open", full, raising=False)
    with pytest.raises(StoreError) as ei:
        sp.write(content(BIG))
    assert ei.value.disk_full
    monkeypatch.undo()
    with pytest.raises(StoreError):
        sp.write(b"more")  # failed: content is incomplete
    with pytest.raises(StoreError):
        store.commit(sp, env(sp.queue_id))  # never committed
    assert sp.queue_id not in store._live  # ...and dropped by that refusal
    assert files(store, "tmp") == set() and store.list() == []


# --- commit failures (Rule 3) --------------------------------------------------------


def test_existing_msg_file_fails_only_that_request_and_is_not_touched(store):
    # Another process's committed content under the same name (an ID clash):
    # the exclusive create refuses to overwrite it, the batch goes on.
    block = store.new_spool()
    block.write(b"first batch\r\n")
    bad, good, big = store.new_spool(), store.new_spool(), store.new_spool()
    for sp in (bad, good):
        sp.write(b"second batch " + sp.queue_id.encode() + b"\r\n")
    big.write(content(BIG))
    store.content_path(bad.queue_id).write_bytes(b"someone else's message\r\n")
    futures = in_one_batch(
        store, (block, env(block.queue_id)), [(sp, env(sp.queue_id)) for sp in (bad, good, big)]
    )
    futures[0].result(10)
    with pytest.raises(StoreError) as ei:
        futures[1].result(10)
    assert not ei.value.disk_full
    futures[2].result(10)
    futures[3].result(10)
    assert store.stats()["max_batch"] >= 3 and store.stats()["failed"] == 1
    assert read_message(store.content_path(bad.queue_id)) == b"someone else's message\r\n"
    assert {e.queue_id for e in store.list()} == {block.queue_id, good.queue_id, big.queue_id}
    assert read_message(store.content_path(big.queue_id)) == content(BIG)
    assert files(store, "tmp") == set()


def test_disk_full_while_writing_msg_fails_that_request_with_disk_full(store, monkeypatch):
    real_writev = os.writev
    victim = store.new_spool()
    victim.write(b"VICTIM\r\n")
    other = store.new_spool()
    other.write(b"other\r\n")

    def writev(fd, parts):  # preamble + content in one call
        if any(bytes(part[:6]) == b"VICTIM" for part in parts):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_writev(fd, parts)

    monkeypatch.setattr(store_mod.os, "writev", writev)
    f_victim = store.commit_async(victim, env(victim.queue_id))
    f_other = store.commit_async(other, env(other.queue_id))
    with pytest.raises(StoreError) as ei:
        f_victim.result(10)
    assert ei.value.disk_full
    f_other.result(10)
    monkeypatch.undo()
    assert not store.content_path(victim.queue_id).exists()  # the partial file is gone
    assert [e.queue_id for e in store.list()] == [other.queue_id]
    assert victim.queue_id not in store._live


def test_transaction_failure_fails_the_whole_batch_and_unlinks_both_kinds(store, tmp_path):
    import sqlite3

    block = store.new_spool()
    small, big = store.new_spool(), store.new_spool()
    small.write(b"small\r\n")
    big.write(content(BIG))
    db = sqlite3.connect(tmp_path / "queue" / "queue.db")
    db.execute("INSERT INTO queue VALUES (?, 'hold', 0, '{}')", (big.queue_id,))
    db.commit()
    db.close()
    futures = in_one_batch(
        store,
        (block, env(block.queue_id)),
        [(small, env(small.queue_id)), (big, env(big.queue_id))],
    )
    futures[0].result(10)
    for f in futures[1:]:
        with pytest.raises(StoreError):
            f.result(10)
    for sp in (small, big):
        assert not store.content_path(sp.queue_id).exists()
        assert not sp.path.exists()
    assert {e.queue_id for e in store.list()} == {block.queue_id, big.queue_id}  # the 'hold' row
    assert files(store, "msg") == {block.queue_id}


# --- recovery ----------------------------------------------------------------------------


def test_recover_removes_a_half_written_msg_file_without_a_row(store):
    # A crash while the committer wrote an in-memory spool to msg/: a partial
    # file, no row, never acknowledged.
    keep = store.new_spool()
    keep.write(b"keep\r\n")
    store.commit(keep, env(keep.queue_id))
    half = NEW_ID.next()
    store.content_path(half).write_bytes(as_committed(store, half, b"Received: by us\r\nSubj"))
    live = store.new_spool()  # being received: in memory
    live.write(b"in progress\r\n")
    rep = store.recover()
    assert rep.orphans_removed == [half] and rep.tmp_removed == []
    assert files(store, "msg") == {keep.queue_id}
    store.commit(live, env(live.queue_id))  # recover() did not break it
    assert {e.queue_id for e in store.list()} == {keep.queue_id, live.queue_id}


def test_recover_waits_for_another_process_committing(store):
    # Another process's committer holds queue.lock shared during its batch
    # (between creating msg/<id> and inserting the row): recover() waits.
    fd = os.open(store.root / "queue.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_SH)
    orphan = NEW_ID.next()
    store.content_path(orphan).write_bytes(
        as_committed(store, orphan, b"being committed by the other process\r\n")
    )
    done = threading.Event()
    t = threading.Thread(target=lambda: (store.recover(), done.set()))
    t.start()
    try:
        assert not done.wait(0.3), "recover() ran during another process's batch"
        assert store.content_path(orphan).exists()
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    t.join(10)
    assert done.is_set()
    assert not store.content_path(orphan).exists()  # its row never came: an orphan


# --- remove_many ------------------------------------------------------------------------


def test_remove_many_deletes_rows_in_one_transaction_then_files(store):
    ids = []
    for i in range(5):
        sp = store.new_spool()
        sp.write(b"m%d\r\n" % i)
        store.commit(sp, env(sp.queue_id))
        ids.append(sp.queue_id)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        store.remove_many(ids[:3] + ["0NOSUCHID000000"])
    finally:
        store._db.set_trace_callback(None)
    assert sum(s.strip().upper() == "COMMIT" for s in statements) == 1
    assert {e.queue_id for e in store.list()} == set(ids[3:])
    assert files(store, "msg") == set(ids[3:])
    store.remove_many([])  # nothing to do, no transaction
    assert store.counts()["incoming"] == 2


def test_remove_many_leaves_rows_and_files_on_a_database_error(store, monkeypatch):
    sp = store.new_spool()
    sp.write(b"x\r\n")
    store.commit(sp, env(sp.queue_id))
    import sqlite3

    class Broken:
        in_transaction = False

        def execute(self, sql, *a):
            raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "_manager_db", lambda: Broken())
    with pytest.raises(StoreError):
        store.remove_many([sp.queue_id])
    monkeypatch.undo()
    assert store.content_path(sp.queue_id).exists()
    assert [e.queue_id for e in store.list()] == [sp.queue_id]


# --- queue IDs ----------------------------------------------------------------------------


def test_two_stores_in_one_process_never_share_an_id(tmp_path):
    a, b = QueueStore(tmp_path / "a"), QueueStore(tmp_path / "b")
    a.open()
    b.open()
    try:
        ids = [s.new_spool().queue_id for _ in range(500) for s in (a, b)]
        assert len(set(ids)) == len(ids)
    finally:
        a.close()
        b.close()


def test_a_forked_process_draws_ids_with_another_tail():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: like a worker
        try:
            os.write(w, NEW_ID.next().encode())
        finally:
            os._exit(0)
    os.close(w)
    child = os.read(r, 64).decode()
    os.close(r)
    os.waitpid(pid, 0)
    mine = NEW_ID.next()
    assert len(child) == len(mine) == 15
    assert child[-3:] != mine[-3:]


# --- a batch of one: the directory is synced after the file exists, once ----------


def test_single_commit_syncs_file_and_directory_before_the_row(tmp_path, monkeypatch):
    s = QueueStore(tmp_path / "queue", fsync=True)
    s.open()
    try:
        seen = []
        real_dir, real_fsync = store_mod.fsync_dir, store_mod.os.fsync

        def dir_sync(path):
            # The entry must exist when the directory is synced.
            seen.append(("dir", sorted(p.name for p in (s.root / "msg").iterdir())))
            real_dir(path)

        def file_sync(fd):
            seen.append(("file", None))
            real_fsync(fd)

        monkeypatch.setattr(store_mod, "fsync_dir", dir_sync)
        monkeypatch.setattr(store_mod.os, "fsync", file_sync)
        sp = s.new_spool()
        sp.write(b"Subject: one\r\n\r\nbody\r\n")
        s.commit(sp, env(sp.queue_id))
        assert ("dir", [sp.queue_id]) in seen and ("file", None) in seen
        assert len([k for k, _ in seen if k == "dir"]) == 1  # not synced twice
        assert [e.queue_id for e in s.list()] == [sp.queue_id]
        assert read_message(s.content_path(sp.queue_id)) == b"Subject: one\r\n\r\nbody\r\n"
    finally:
        s.close()


def test_single_commit_whose_directory_sync_fails_leaves_nothing(tmp_path, monkeypatch):
    s = QueueStore(tmp_path / "queue", fsync=True)
    s.open()
    try:

        def broken(path):
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(store_mod, "fsync_dir", broken)
        sp = s.new_spool()
        sp.write(b"Subject: x\r\n\r\nbody\r\n")
        with pytest.raises(StoreError):
            s.commit(sp, env(sp.queue_id))
        assert s.list() == []
        assert files(s, "msg") == set()
    finally:
        s.close()
