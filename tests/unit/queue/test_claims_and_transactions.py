"""SQLite specifics behind the interfaces: how claims are recorded (queue/state.py,
"Claims"), the one transaction() helper and the connection wrapper (queue/dbfile.py)."""

from __future__ import annotations

import sqlite3
import time

import pytest

from pigeon.queue.dbfile import BatchLock, Db, connect, transaction
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.store import QueueStore
from pigeon.vocab import QueueState, StoreError


def commit(store: QueueStore, n: int = 3) -> list[str]:
    ids = []
    for _ in range(n):
        sp = store.new_spool()
        sp.write(b"Subject: t\r\n\r\nhi\r\n")
        store.commit(sp, Envelope(sp.queue_id, "a@b.test", [Recipient("c@d.test")]))
        ids.append(sp.queue_id)
    return ids


def claims(root) -> dict[str, str]:
    db = sqlite3.connect(root / "queue.db")
    try:
        return dict(db.execute("SELECT queue_id, node FROM claims"))
    finally:
        db.close()


@pytest.fixture
def root(tmp_path):
    return tmp_path / "queue"


def open_store(root, node: str = "local") -> QueueStore:
    store = QueueStore(root, fsync=False, node=node)
    store.open()
    return store


def test_the_home_node_records_no_claim(root):
    """A single node pays nothing for ownership: 'active' alone says it is ours."""
    store = open_store(root)
    try:
        ids = commit(store)
        assert store.claim(ids) == ids
        assert claims(root) == {}
    finally:
        store.close()


def test_another_node_records_its_claims_and_removal_drops_them(root):
    store = open_store(root, "mx2")
    try:
        ids = commit(store)
        assert store.claim(ids) == ids
        assert claims(root) == dict.fromkeys(ids, "mx2")
        store.remove_many(ids[:1])
        assert claims(root) == dict.fromkeys(ids[1:], "mx2")
    finally:
        store.close()


def test_a_stale_claim_never_makes_a_home_claim_look_foreign(root):
    """mx2 defers an entry (its claims row stays, counting only while
    'active'); the home node claims it later: that row must go, or a
    recovery of mx2 would release the home node's delivery."""
    other, home = open_store(root, "mx2"), open_store(root)
    try:
        (qid,) = commit(home, 1)
        other.claim([qid])
        other.move([qid], QueueState.DEFERRED, time.time() - 1, from_states=(QueueState.ACTIVE,))
        assert claims(root) == {qid: "mx2"}  # stale, harmless while not 'active'
        assert home.claim([qid], from_states=(QueueState.DEFERRED,)) == [qid]
        assert claims(root) == {}
        assert other.recover().reactivated == []
        assert home.states([qid]) == {qid: QueueState.ACTIVE}
    finally:
        other.close()
        home.close()


def test_recovery_prunes_claims_of_entries_no_longer_active(root):
    store = open_store(root, "mx2")
    try:
        ids = commit(store)
        store.claim(ids)
        store.move(ids[:2], QueueState.DEFERRED, from_states=(QueueState.ACTIVE,))
        assert len(claims(root)) == 3
        home = open_store(root)
        try:
            assert home.recover().reactivated == []  # ids[2] is mx2's
        finally:
            home.close()
        assert claims(root) == {ids[2]: "mx2"}
    finally:
        store.close()


def test_a_new_database_forgets_leftover_claims(root):
    store = open_store(root, "mx2")
    ids = commit(store)
    store.claim(ids)
    store.close()
    db = sqlite3.connect(root / "queue.db")
    db.execute("DROP TABLE queue")  # lost: recreated at the next open, files adopted
    db.commit()
    db.close()
    store = open_store(root, "mx2")
    try:
        assert store.db_state.created and claims(root) == {}
        assert sorted(store.recover().rebuilt) == sorted(ids)
    finally:
        store.close()


# --- transaction() and Db ------------------------------------------------------------------


@pytest.fixture
def conn(tmp_path):
    c = connect(tmp_path / "t.db", synchronous="OFF")
    c.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    yield c
    c.close()


def rows(conn) -> list[int]:
    return [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")]


def test_transaction_commits_the_whole_block(conn):
    with transaction(conn, "test") as db:
        db.execute("INSERT INTO t VALUES (1)")
        db.execute("INSERT INTO t VALUES (2)")
        assert conn.in_transaction
    assert rows(conn) == [1, 2] and not conn.in_transaction


def test_a_database_error_rolls_back_and_becomes_a_store_error(conn):
    with pytest.raises(StoreError, match="^test: UNIQUE constraint failed") as ei:
        with transaction(conn, "test") as db:
            db.execute("INSERT INTO t VALUES (1)")
            db.execute("INSERT INTO t VALUES (1)")
    assert isinstance(ei.value.__cause__, sqlite3.IntegrityError)
    assert not ei.value.storage_fault and not ei.value.disk_full
    assert rows(conn) == [] and not conn.in_transaction


def test_any_other_exception_rolls_back_and_passes_unchanged(conn):
    with pytest.raises(KeyError):
        with transaction(conn, "test") as db:
            db.execute("INSERT INTO t VALUES (1)")
            raise KeyError("a bug")
    assert rows(conn) == [] and not conn.in_transaction


def test_a_failing_commit_is_a_store_error_and_leaves_no_transaction_open(conn, tmp_path):
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
    )
    conn.execute("PRAGMA foreign_keys=ON")
    with pytest.raises(StoreError, match="FOREIGN KEY"):
        with transaction(conn, "test") as db:
            db.execute("INSERT INTO child VALUES (7)")  # checked at COMMIT
    assert not conn.in_transaction
    assert conn.execute("SELECT COUNT(*) FROM child").fetchone()[0] == 0


def test_a_failing_begin_is_a_store_error(conn):
    conn.execute("BEGIN")  # a transaction already open: BEGIN IMMEDIATE fails
    with pytest.raises(StoreError, match="^test: ") as ei:
        with transaction(conn, "test"):
            pytest.fail("the block must not run")
    assert isinstance(ei.value.__cause__, sqlite3.OperationalError)
    conn.execute("ROLLBACK")


def test_db_transaction_holds_the_lock_and_releases_it_on_every_exit(conn):
    db = Db(conn)
    with db.transaction("test") as c:
        assert db.lock.locked()
        c.execute("INSERT INTO t VALUES (1)")
    assert not db.lock.locked() and rows(conn) == [1]
    with pytest.raises(StoreError):  # a database error in the block
        with db.transaction("test") as c:
            c.execute("INSERT INTO t VALUES (1)")
    assert not db.lock.locked()
    with pytest.raises(KeyError):  # any other exception
        with db.transaction("test"):
            raise KeyError("a bug")
    assert not db.lock.locked()
    conn.execute("BEGIN")  # BEGIN IMMEDIATE fails
    with pytest.raises(StoreError):
        with db.transaction("test"):
            pass
    conn.execute("ROLLBACK")
    assert not db.lock.locked() and rows(conn) == [1] and not conn.in_transaction


def test_batch_lock_is_released_after_each_holding(tmp_path):
    lock = BatchLock(tmp_path / "queue.lock")
    try:
        for holding in (lock.shared, lock.exclusive, lock.shared):
            with pytest.raises(KeyError):
                with holding():
                    assert lock._threads.locked()
                    raise KeyError("a bug")
            assert not lock._threads.locked()
        # queue.lock is free again too: another descriptor gets it exclusively at once.
        import fcntl

        other = open(tmp_path / "queue.lock", "rb")
        try:
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            other.close()
    finally:
        lock.close()


def test_db_query_converts_errors(conn):
    db = Db(conn)
    assert db.query("test", "SELECT 1") == [(1,)]
    with pytest.raises(StoreError, match="^listing: no such table"):
        db.query("listing", "SELECT * FROM nowhere")


def test_probe_failure_is_a_storage_fault_store_error(root):
    store = open_store(root)
    try:
        store.probe()
        (root / "tmp").rename(root / "gone")  # the probe cannot be created
        with pytest.raises(StoreError) as ei:
            store.probe()
        assert isinstance(ei.value.__cause__, FileNotFoundError)
    finally:
        store.close()


def test_an_unknown_state_is_a_bug_every_time(root):
    store = open_store(root)
    try:
        ids = commit(store, 1)
        for _ in range(2):  # the second time too (the check remembers valid combinations)
            with pytest.raises(ValueError, match="unknown queue state"):
                store.move(ids, QueueState.DEFERRED, from_states=(QueueState.INCOMING, "bogus"))
            with pytest.raises(ValueError, match="unknown queue state"):
                store.claim(ids, from_states=("nowhere",))
        assert store.move(ids, QueueState.DEFERRED, from_states=(QueueState.INCOMING,)) == ids
        assert store.claim(ids, from_states=(QueueState.DEFERRED,)) == ids
    finally:
        store.close()
