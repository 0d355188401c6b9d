"""Recovery when the database lost track (queue/recovery.py, the rules in
queue/store.py): the decision table, then the store with its queue.db ok,
missing, empty or damaged, files with and without rows, of this store or
another, and `rebuild()` (pigeon queue rebuild)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from pigeon import msgfile
from pigeon.msgfile import PreambleError, read_preamble
from pigeon.queue.dbfile import StoreBusy, StoreCorrupt
from pigeon.queue.model import Envelope, Recipient, RecipientStatus
from pigeon.queue.rebuild import rebuild
from pigeon.queue.recovery import Action, decide
from pigeon.queue.spool import NEW_ID, SPILL_THRESHOLD
from pigeon.queue.store import QueueStore
from pigeon.testing.storage import content_bytes, content_file

SELF, OTHER = "a" * 32, "b" * 32


_SOME_ENVELOPE = object()


def pre(store_id: str, envelope=_SOME_ENVELOPE, error: str = ""):
    envelope = {"queue_id": "X"} if envelope is _SOME_ENVELOPE else envelope
    return msgfile.Preamble(store_id, False, None if error else envelope, 200, error)


# --- the decision table ----------------------------------------------------------------


@pytest.mark.parametrize("adopt_all", [False, True], ids=["start", "rebuild"])
@pytest.mark.parametrize(
    "case, expected_start, expected_rebuild",
    [
        # (has_row, preamble, error)
        ((True, pre(SELF), None), Action.KEEP, Action.KEEP),
        ((True, pre(OTHER), None), Action.KEEP, Action.KEEP),
        ((True, None, None), Action.KEEP, Action.KEEP),  # older format, row
        ((False, pre(SELF), None), Action.DELETE, Action.ADOPT),  # Rule 2 / restore
        ((False, pre(OTHER), None), Action.ADOPT, Action.ADOPT),  # lost track
        ((False, pre(SELF, error="checksum"), None), Action.DELETE, Action.QUARANTINE),
        ((False, pre(OTHER, error="checksum"), None), Action.QUARANTINE, Action.QUARANTINE),
        ((False, pre(OTHER, envelope=None), None), Action.QUARANTINE, Action.QUARANTINE),
        ((False, None, None), Action.QUARANTINE, Action.QUARANTINE),  # older format
        ((False, None, PreambleError("bad line")), Action.QUARANTINE, Action.QUARANTINE),
        ((False, None, PreambleError("cut", fragment=True)), Action.DELETE, Action.DELETE),
    ],
    ids=[
        "row-self",
        "row-other",
        "row-legacy",
        "self",
        "other",
        "self-damaged",
        "other-damaged",
        "other-null",
        "legacy",
        "bad-first-line",
        "fragment",
    ],
)
def test_decision_table(case, expected_start, expected_rebuild, adopt_all):
    has_row, preamble, error = case
    action, reason = decide(
        has_row=has_row, preamble=preamble, error=error, db_store_id=SELF, adopt_all=adopt_all
    )
    assert action is (expected_rebuild if adopt_all else expected_start), reason
    assert reason


# --- the store ---------------------------------------------------------------------------

MESSAGE = b"Received: by test\r\nSubject: %d\r\n\r\nbody\r\n"


def open_store(root: Path, **kw) -> QueueStore:
    s = QueueStore(root, fsync=False)
    s.open(**kw)
    return s


def commit(store: QueueStore, n: int, *, rcpts=("bob@remote.test",), big: bool = False) -> str:
    draft = Envelope(
        "", "alice@example.test", [Recipient(r) for r in rcpts], received_at=1_700_000_000.0 + n
    )
    sp = store.new_spool(draft)
    sp.write(MESSAGE % n + (b"\xc3\xa9" * (SPILL_THRESHOLD // 2 + 10) if big else b""))
    draft.size, draft.eight_bit = sp.size, big
    store.commit(sp, draft)
    return sp.queue_id


def queued(store: QueueStore, state: str | None = None) -> list[str]:
    return [e.queue_id for e in store.list(state)]


def drop_db(root: Path, how: str) -> None:
    """Lose queue.db the way the issue describes (pigeon stopped)."""
    db = root / "queue.db"
    for name in ("queue.db-wal", "queue.db-shm"):
        (root / name).unlink(missing_ok=True)
    if how == "missing":
        db.unlink()
    elif how == "empty":
        db.write_bytes(b"")
    elif how == "no-schema":  # an SQLite file, but not ours
        db.unlink()
        other = sqlite3.connect(db)
        other.execute("CREATE TABLE unrelated (x)")
        other.commit()
        other.close()
    elif how == "garbage":
        db.write_bytes(b"this is not a database\n" * 500)
    else:
        raise ValueError(how)


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "queue"


@pytest.mark.parametrize("how", ["missing", "empty", "no-schema"])
def test_lost_database_is_rebuilt_from_the_files(root, how, caplog):
    store = open_store(root)
    small = commit(store, 1, rcpts=("a@remote.test", "b@remote.test"))
    big = commit(store, 2, big=True)  # spilled: a draft preamble
    env = store.load(small)
    env.recipients[0].status = RecipientStatus.DELIVERED  # status lives in the DB only
    store.update(env, "deferred", time.time() + 3600)
    old_id = store.store_id
    store.close()
    drop_db(root, how)

    store = open_store(root, owner=True)
    try:
        assert store.db_state.created and store.store_id != old_id
        rep = store.recover()
        assert sorted(rep.rebuilt) == sorted([small, big]) and rep.orphans_removed == []
        assert sorted(queued(store, "incoming")) == sorted([small, big])
        assert store.due(time.time(), 10)  # due at once
        got = store.load(small)
        assert [r.address for r in got.recipients] == ["a@remote.test", "b@remote.test"]
        assert all(r.status is RecipientStatus.PENDING for r in got.recipients)  # twice, never zero
        assert got.received_at == 1_700_000_001.0 and got.size == len(MESSAGE % 1)
        assert content_bytes(store, small) == MESSAGE % 1
        bigenv = store.load(big)
        assert bigenv.eight_bit and bigenv.size == len(content_bytes(store, big))
        assert sum("queue rebuilt 2 message(s)" in r.getMessage() for r in caplog.records) == 1
        # The adopted files now belong to this database: a second start finds
        # nothing to do, and a removal cut short is cleaned up by Rule 2.
        for qid in (small, big):
            with open(content_file(store, qid), "rb") as fh:
                assert read_preamble(fh).store_id == store.store_id
        again = store.recover()
        assert again.rebuilt == [] and again.orphans_removed == []
        db = sqlite3.connect(root / "queue.db")
        db.execute("DELETE FROM queue WHERE queue_id=?", (small,))
        db.commit()
        db.close()
        assert store.recover().orphans_removed == [small]
    finally:
        store.close()


def test_files_of_this_database_without_a_row_are_unfinished_commits(root):
    store = open_store(root)
    try:
        keep = commit(store, 1)
        orphan = NEW_ID.next()
        raw = json.dumps(Envelope(orphan, "", [Recipient("x@remote.test")]).to_dict()).encode()
        content_file(store, orphan).write_bytes(msgfile.encode(store.store_id, raw) + b"half")
        rep = store.recover()
        assert rep.orphans_removed == [orphan] and rep.rebuilt == []
        assert queued(store) == [keep] and not content_file(store, orphan).exists()
    finally:
        store.close()


def test_a_file_from_another_queue_without_a_row_is_adopted(root, tmp_path):
    other = open_store(tmp_path / "other")
    moved = commit(other, 7)
    other.close()
    store = open_store(root)
    try:
        mine = commit(store, 1)
        os.rename(content_file(other, moved), content_file(store, moved))
        rep = store.recover()
        assert rep.rebuilt == [moved]
        assert sorted(queued(store)) == sorted([mine, moved])
    finally:
        store.close()


def test_what_cannot_be_rebuilt_is_quarantined_and_kept(root):
    store = open_store(root)
    try:
        legacy, damaged, wrong_id = NEW_ID.next(), NEW_ID.next(), NEW_ID.next()
        empty, cut = NEW_ID.next(), NEW_ID.next()
        content_file(store, legacy).write_bytes(b"Received: older format\r\n\r\nhi\r\n")
        raw = json.dumps(Envelope(damaged, "", [Recipient("x@remote.test")]).to_dict()).encode()
        bad = bytearray(msgfile.encode(OTHER, raw) + b"hi\r\n")
        bad[msgfile.HEADER_LEN + 5] ^= 0x20
        content_file(store, damaged).write_bytes(bytes(bad))
        raw = json.dumps(Envelope("SOMETHINGELSE00", "", [Recipient("x@r.test")]).to_dict())
        content_file(store, wrong_id).write_bytes(msgfile.encode(OTHER, raw.encode()) + b"hi")
        content_file(store, empty).write_bytes(b"")
        content_file(store, cut).write_bytes(msgfile.MAGIC[:7])
        (root / "msg" / "notes.txt").write_text("an operator's file")
        rep = store.recover()
        assert sorted(rep.quarantined) == sorted([legacy, damaged, wrong_id])
        assert sorted(rep.orphans_removed) == sorted([empty, cut])  # no message in them
        assert rep.ignored == ["notes.txt"] and (root / "msg" / "notes.txt").exists()
        assert sorted(queued(store, "corrupt")) == sorted([legacy, damaged, wrong_id])
        for qid in (legacy, damaged, wrong_id):
            assert content_file(store, qid).exists()
            assert store.entry(qid).envelope is None  # listed as unreadable
        assert store.due(time.time() + 10, 10) == []
        assert store.recover().quarantined == []  # once, not every start
    finally:
        store.close()


def test_older_format_files_with_rows_are_read_as_before(root):
    store = open_store(root)
    try:
        qid = commit(store, 1)
        content_file(store, qid).write_bytes(MESSAGE % 1)  # as the older version wrote
        assert store.recover().quarantined == []
        content = store.content(qid)
        with content.open() as fh:
            assert fh.read() == MESSAGE % 1 and content.size == len(MESSAGE % 1)
    finally:
        store.close()


def test_a_database_of_the_older_format_gets_a_store_id_and_keeps_its_rows(root):
    store = open_store(root)
    qid = commit(store, 1)
    store.close()
    db = sqlite3.connect(root / "queue.db")
    db.execute("DROP TABLE meta")
    db.commit()
    db.close()
    store = open_store(root)
    try:
        assert store.db_state.store_id_added and not store.db_state.created
        assert store.store_id
        rep = store.recover()
        assert rep.rebuilt == rep.orphans_removed == rep.quarantined == []
        assert queued(store) == [qid] and content_bytes(store, qid) == MESSAGE % 1
    finally:
        store.close()


@pytest.mark.parametrize("owner", [False, True])
def test_a_garbage_database_is_refused_with_the_repair_command(root, owner):
    store = open_store(root)
    qid = commit(store, 1)
    store.close()
    drop_db(root, "garbage")
    with pytest.raises(StoreCorrupt) as ei:
        open_store(root, owner=owner)
    text = str(ei.value)
    assert str(root / "queue.db") in text and "pigeon queue rebuild --from-files" in text
    assert "\n" not in text
    assert content_file(store, qid).exists()  # nothing touched
    assert not (root / "owner.lock").exists() or _lock_is_free(root)


def test_a_database_failing_quick_check_is_refused_by_the_owner(root):
    store = open_store(root)
    for n in range(300):
        commit(store, n, rcpts=tuple(f"r{i}@remote.test" for i in range(5)))
    store.close()
    db = root / "queue.db"
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[3 * page : 3 * page + 64] = b"\xff" * 64  # a damaged b-tree page header
    db.write_bytes(bytes(data))
    with pytest.raises(StoreCorrupt) as ei:
        open_store(root, owner=True)
    assert "pigeon queue rebuild --from-files" in str(ei.value)


def _lock_is_free(root: Path) -> bool:
    import fcntl

    fd = os.open(root / "owner.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


# --- rebuild() ---------------------------------------------------------------------------


def test_rebuild_from_files_moves_a_damaged_database_aside(root):
    store = open_store(root)
    ids = [commit(store, n) for n in range(3)]
    store.close()
    drop_db(root, "garbage")
    with pytest.raises(StoreCorrupt):
        rebuild(root, fsync=False)
    rep = rebuild(root, from_files=True, fsync=False)
    assert sorted(rep.rebuilt) == sorted(ids)
    (aside,) = root.glob("queue.db.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not a database")
    store = open_store(root, owner=True)
    try:
        assert store.recover().rebuilt == []
        assert sorted(queued(store, "incoming")) == sorted(ids)
    finally:
        store.close()


def test_rebuild_after_restoring_a_backup_adopts_files_of_the_same_database(root, tmp_path):
    store = open_store(root)
    before = commit(store, 1)
    store.close()
    backup = tmp_path / "queue.db.backup"
    backup.write_bytes((root / "queue.db").read_bytes())
    store = open_store(root)
    after = commit(store, 2)  # committed after the backup
    store.close()
    os.replace(backup, root / "queue.db")  # the restore
    rep = rebuild(root, fsync=False)
    assert rep.rebuilt == [after] and rep.orphans_removed == []
    store = open_store(root)
    try:
        assert sorted(queued(store)) == sorted([before, after])
    finally:
        store.close()


def test_rebuild_and_the_serving_owner_exclude_each_other(root):
    server = open_store(root, owner=True)
    try:
        with pytest.raises(StoreBusy, match="pigeon is running"):
            rebuild(root, fsync=False)
        other = open_store(root)  # sendmail, workers: welcome
        other.close()
    finally:
        server.close()
    import fcntl

    fd = os.open(root / "owner.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a rebuild at work
    try:
        with pytest.raises(StoreBusy, match="rebuild"):
            open_store(root, owner=True)
    finally:
        os.close(fd)
    open_store(root, owner=True).close()


# --- every producer writes a rebuildable file, also when the spool spills -------------


def test_big_local_submissions_and_reports_are_rebuilt_too(root):
    from pigeon.admin import localsubmit as L
    from pigeon.qmgr.notify import Notice, enqueue_notice

    big = b"\xc3\xa9t\xc3\xa9\n" * (SPILL_THRESHOLD // 6 + 100)  # spills, 8-bit
    store = open_store(root)
    prepared = L.prepare(
        b"Subject: big\n\n" + big,
        recipients=["bob@remote.test"],
        extract=False,
        sender="root@example.test",
        fullname="",
        hostname="mx.example.test",
        domain="example.test",
    )
    sent = L.enqueue(
        store,
        prepared,
        sender="root@example.test",
        hostname="mx.example.test",
        uid=0,
        now=1_700_000_000.0,
    )
    report = enqueue_notice(
        store,
        Notice(
            "failure", "alice@remote.test", b"X: y\r\n\r\n" + big.replace(b"\n", b"\r\n"), "bounced"
        ),
        1_700_000_001.0,
    )
    originals = {q: store.load(q) for q in (sent.queue_id, report)}
    store.close()
    drop_db(root, "missing")
    store = open_store(root)
    try:
        assert sorted(store.recover().rebuilt) == sorted(originals)
        for qid, original in originals.items():
            assert store.load(qid).to_dict() == original.to_dict()
    finally:
        store.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files away")
def test_rebuild_as_root_leaves_the_files_to_the_queue_owner(root):
    store = open_store(root)
    qid = commit(store, 1)
    store.close()
    drop_db(root, "garbage")
    os.chown(root, 65534, 65534)  # the queue belongs to "nobody"
    rebuild(root, from_files=True, fsync=False)
    for name in ("queue.db", "queue.lock", "owner.lock"):
        assert (root / name).stat().st_uid == 65534, name
    assert (root / "msg" / qid).exists()
