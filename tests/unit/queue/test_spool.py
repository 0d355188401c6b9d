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

from pigeon import msgfile
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.spool import NEW_ID, SPILL_THRESHOLD, Spools
from pigeon.queue.store import QueueStore
from pigeon.testing.storage import FaultyDisk, content_bytes, content_file
from pigeon.vocab import StoreError

BIG = SPILL_THRESHOLD + 1000


def env(qid: str) -> Envelope:
    return Envelope(
        qid, "alice@example.test", [Recipient("bob@example.test")], received_at=time.time()
    )


@pytest.fixture
def disk():
    return FaultyDisk()


@pytest.fixture(params=[True, False], ids=["fsync", "nofsync"])
def store(request, tmp_path, disk):
    s = QueueStore(tmp_path / "queue", fsync=request.param, disk=disk)
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


def in_one_batch(store: QueueStore, disk: FaultyDisk, first, rest):
    """Submit `first`, hold the committer inside its batch (at the create of
    its msg/ file), queue `rest`, then let it go: `rest` form the next batch
    together. Returns the futures, in order."""
    spool = first[0]
    gate = disk.gate("open", when=lambda path: path.endswith("/msg/" + spool.queue_id))
    futures = [store.commit_async(*first)]
    assert gate.entered.wait(10), "the committer never took the first request"
    futures += [store.commit_async(*r) for r in rest]
    gate.release()
    return futures


def test_spools_know_which_are_live(tmp_path):
    spools = Spools(tmp_path, "0" * 32)
    a, b = spools.new(), spools.new()
    assert spools.live() == {a.queue_id, b.queue_id}
    a.discard()
    b.begin_commit(env(b.queue_id))
    assert spools.live() == {b.queue_id}  # committing: still live
    b.abort_commit()
    assert spools.live() == set()


# --- in memory ------------------------------------------------------------------


def test_small_spool_stays_in_memory_until_commit(store, disk):
    sp = store.new_spool()
    data = content(SPILL_THRESHOLD)  # exactly the threshold: still memory
    write_in_pieces(sp, data)
    assert sp.in_memory and sp.size == len(data)
    assert files(store, "tmp") == set() and files(store, "msg") == set()
    assert sp.head(100) == data[:100] and sp.head() == data[:65536]
    store.commit(sp, env(sp.queue_id))
    assert content_bytes(store, sp.queue_id) == data
    assert stat.S_IMODE(content_file(store, sp.queue_id).stat().st_mode) == 0o600
    assert files(store, "tmp") == set()
    assert [e.queue_id for e in store.list()] == [sp.queue_id]
    assert sp.in_memory and sp._buf is None  # memory released
    # One create, one writev (preamble and content), at most one fsync: no tmp file.
    writes = [arg for name, arg in disk.calls if name == "write_all"]
    assert len(writes) == 1 and bytes(writes[0][1]) == data


def test_empty_spool_commits_an_empty_file(store):
    sp = store.new_spool()
    store.commit(sp, env(sp.queue_id))
    assert content_bytes(store, sp.queue_id) == b""


def test_discard_in_memory_leaves_nothing_and_is_final(store):
    sp = store.new_spool()
    sp.write(b"partial\r\n")
    sp.discard()
    sp.discard()
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
    assert stat.S_IMODE(os.stat(sp.path).st_mode) == 0o600
    assert sp.head(10) == data[:10] and sp.head() == data[:65536]
    store.commit(sp, env(sp.queue_id))
    assert content_bytes(store, sp.queue_id) == data
    assert files(store, "tmp") == set()
    assert content_file(store, sp.queue_id).stat().st_nlink == 1
    assert [e.queue_id for e in store.list()] == [sp.queue_id]


def test_one_write_bigger_than_the_threshold_spills(store):
    sp = store.new_spool()
    sp.write(b"Received: x\r\n")
    sp.write(content(BIG))
    assert not sp.in_memory
    assert sp.head(13) == b"Received: x\r\n"
    store.commit(sp, env(sp.queue_id))
    assert content_bytes(store, sp.queue_id) == b"Received: x\r\n" + content(BIG)


def test_discard_spilled_unlinks_the_tmp_file(store):
    sp = store.new_spool()
    sp.write(content(BIG))
    assert os.path.exists(sp.path)
    sp.discard()
    sp.discard()
    assert not os.path.exists(sp.path)
    assert files(store, "tmp") == set() and files(store, "msg") == set()
    assert store.recover().tmp_removed == []  # nothing left for recovery


@pytest.mark.parametrize("call", ["open", "write_all"])
def test_spill_on_a_full_disk_fails_the_spool_which_can_only_be_discarded(store, disk, call):
    sp = store.new_spool()
    sp.write(b"head\r\n")
    disk.fail(call, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(StoreError) as ei:
        sp.write(content(BIG))
    assert ei.value.disk_full
    with pytest.raises(StoreError):
        sp.write(b"more")  # failed: content is incomplete
    with pytest.raises(StoreError):
        store.commit(sp, env(sp.queue_id))  # never committed
    # ...and dropped by that refusal: nothing is left, and recovery has no debris.
    assert files(store, "tmp") == set() and store.list() == []
    assert store.recover().tmp_removed == []


# --- commit failures (Rule 3) --------------------------------------------------------


def test_existing_msg_file_fails_only_that_request_and_is_not_touched(store, disk):
    # Another process's committed content under the same name (an ID clash):
    # the exclusive create refuses to overwrite it, the batch goes on.
    block = store.new_spool()
    block.write(b"first batch\r\n")
    bad, good, big = store.new_spool(), store.new_spool(), store.new_spool()
    for sp in (bad, good):
        sp.write(b"second batch " + sp.queue_id.encode() + b"\r\n")
    big.write(content(BIG))
    content_file(store, bad.queue_id).write_bytes(b"someone else's message\r\n")
    futures = in_one_batch(
        store,
        disk,
        (block, env(block.queue_id)),
        [(sp, env(sp.queue_id)) for sp in (bad, good, big)],
    )
    futures[0].result(10)
    with pytest.raises(StoreError) as ei:
        futures[1].result(10)
    assert not ei.value.disk_full
    futures[2].result(10)
    futures[3].result(10)
    assert store.stats()["max_batch"] >= 3 and store.stats()["failed"] == 1
    assert content_file(store, bad.queue_id).read_bytes() == b"someone else's message\r\n"
    assert {e.queue_id for e in store.list()} == {block.queue_id, good.queue_id, big.queue_id}
    assert content_bytes(store, big.queue_id) == content(BIG)
    assert files(store, "tmp") == set()


def test_disk_full_while_writing_msg_fails_that_request_with_disk_full(store, disk):
    victim = store.new_spool()
    victim.write(b"VICTIM\r\n")
    other = store.new_spool()
    other.write(b"other\r\n")
    disk.fail(  # preamble + content in one call
        "write_all",
        OSError(errno.ENOSPC, "No space left on device"),
        when=lambda parts: any(bytes(part[:6]) == b"VICTIM" for part in parts),
    )
    f_victim = store.commit_async(victim, env(victim.queue_id))
    f_other = store.commit_async(other, env(other.queue_id))
    with pytest.raises(StoreError) as ei:
        f_victim.result(10)
    assert ei.value.disk_full and store.health.degraded
    f_other.result(10)
    assert not content_file(store, victim.queue_id).exists()  # the partial file is gone
    assert [e.queue_id for e in store.list()] == [other.queue_id]


def test_transaction_failure_fails_the_whole_batch_and_unlinks_both_kinds(store, disk, tmp_path):
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
        disk,
        (block, env(block.queue_id)),
        [(small, env(small.queue_id)), (big, env(big.queue_id))],
    )
    futures[0].result(10)
    for f in futures[1:]:
        with pytest.raises(StoreError):
            f.result(10)
    for sp in (small, big):
        assert not content_file(store, sp.queue_id).exists()
        assert not os.path.exists(sp.path)
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
    content_file(store, half).write_bytes(as_committed(store, half, b"Received: by us\r\nSubj"))
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
    content_file(store, orphan).write_bytes(
        as_committed(store, orphan, b"being committed by the other process\r\n")
    )
    done = threading.Event()
    t = threading.Thread(target=lambda: (store.recover(), done.set()))
    t.start()
    try:
        assert not done.wait(0.3), "recover() ran during another process's batch"
        assert content_file(store, orphan).exists()
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    t.join(10)
    assert done.is_set()
    assert not content_file(store, orphan).exists()  # its row never came: an orphan


# --- remove_many ------------------------------------------------------------------------


def commit_five(store: QueueStore) -> list[str]:
    ids = []
    for i in range(5):
        sp = store.new_spool()
        sp.write(b"m%d\r\n" % i)
        store.commit(sp, env(sp.queue_id))
        ids.append(sp.queue_id)
    return ids


def test_remove_many_deletes_rows_then_files(store):
    ids = commit_five(store)
    store.remove_many(ids[:3] + ["0NOSUCHID000000"])
    assert {e.queue_id for e in store.list()} == set(ids[3:])
    assert files(store, "msg") == set(ids[3:])
    store.remove_many([])  # nothing to do
    assert store.counts()["incoming"] == 2


def test_remove_many_is_one_transaction_all_or_nothing(store, tmp_path):
    """The third DELETE fails: the first two are rolled back, no file is
    unlinked (Rule 4: rows first, files only after the commit)."""
    ids = commit_five(store)
    import sqlite3

    db = sqlite3.connect(tmp_path / "queue" / "queue.db")
    db.execute(
        "CREATE TRIGGER failing BEFORE DELETE ON queue WHEN old.queue_id = "
        f"'{ids[2]}' BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
    )
    db.close()
    with pytest.raises(StoreError, match="queue remove"):
        store.remove_many(ids[:4])
    assert {e.queue_id for e in store.list()} == set(ids)
    assert files(store, "msg") == set(ids)


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


def test_single_commit_syncs_file_and_directory_before_the_row(tmp_path):
    disk = FaultyDisk()
    s = QueueStore(tmp_path / "queue", fsync=True, disk=disk)
    s.open()
    try:
        rows_at_dir_sync = []
        # The row must not exist yet when the directory is synced (Rule 1).
        gate = disk.gate("fsync_dir")
        sp = s.new_spool()
        sp.write(b"Subject: one\r\n\r\nbody\r\n")
        fut = s.commit_async(sp, env(sp.queue_id))
        assert gate.entered.wait(10)
        assert files(s, "msg") == {sp.queue_id}  # the entry exists when its directory syncs
        rows_at_dir_sync.append(s.list())
        gate.release()
        fut.result(10)
        assert rows_at_dir_sync == [[]]
        assert disk.names() == ["open", "write_all", "fsync", "fsync_dir"]  # synced once each
        assert [e.queue_id for e in s.list()] == [sp.queue_id]
        assert content_bytes(s, sp.queue_id) == b"Subject: one\r\n\r\nbody\r\n"
    finally:
        s.close()


@pytest.mark.parametrize("call", ["fsync", "fsync_dir"])
def test_single_commit_whose_sync_fails_leaves_nothing(tmp_path, call):
    disk = FaultyDisk()
    disk.fail(call, OSError(errno.EIO, "Input/output error"))
    s = QueueStore(tmp_path / "queue", fsync=True, disk=disk)
    s.open()
    try:
        sp = s.new_spool()
        sp.write(b"Subject: x\r\n\r\nbody\r\n")
        with pytest.raises(StoreError) as ei:
            s.commit(sp, env(sp.queue_id))
        assert ei.value.storage_fault and not ei.value.disk_full
        assert s.list() == []
        assert files(s, "msg") == set()
    finally:
        s.close()


def test_a_spilled_spool_with_fields_whose_copy_fails_leaves_nothing(store, disk):
    """The copy behind prepended fields is Rule 3 like every other commit path."""
    sp = store.new_spool()
    sp.write(content(BIG))
    sp.prepend(b"Authentication-Results: mx; none\r\n")
    disk.fail(
        "write_all", OSError(errno.EIO, "Input/output error"), when=lambda parts: len(parts) == 2
    )
    with pytest.raises(StoreError) as ei:
        store.commit(sp, env(sp.queue_id))
    assert ei.value.storage_fault
    assert files(store, "msg") == set() and files(store, "tmp") == set()
    assert store.list() == []
