"""QueueStore.due()/next_retry(): index range searches, fairness between new and deferred."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.state import DUE_SQL, NEXT_RETRY_SQL
from pigeon.queue.store import QueueStore


@pytest.fixture
def store(tmp_path):
    s = QueueStore(tmp_path / "queue", fsync=False)
    s.open()
    yield s
    s.close()


def insert(store: QueueStore, state: str, times: list[float], prefix: str) -> list[str]:
    """Rows straight into the database (as bench/queue_scale.py does)."""
    db = sqlite3.connect(store.root / "queue.db")
    ids = [f"{prefix}{i:08d}" for i in range(len(times))]
    env = json.dumps(Envelope("X", "a@b.test", [Recipient("c@d.test")]).to_dict())
    db.executemany(
        "INSERT INTO queue VALUES (?, ?, ?, ?)", [(q, state, t, env) for q, t in zip(ids, times)]
    )
    db.commit()
    db.close()
    return ids


def plan(store: QueueStore, sql: str, args: tuple) -> list[str]:
    db = sqlite3.connect(store.root / "queue.db")
    try:
        return [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, args)]
    finally:
        db.close()


def test_due_query_is_an_index_range_search_without_sort(store):
    insert(store, "deferred", [float(i) for i in range(2000)], "D")
    details = plan(store, DUE_SQL, ("deferred", 100.0, 10))
    assert details == ["SEARCH queue USING INDEX queue_due (state=? AND next_attempt<?)"]
    assert not any("SCAN" in d or "TEMP B-TREE" in d for d in details)


def test_next_retry_query_uses_the_index(store):
    details = plan(store, NEXT_RETRY_SQL, ("deferred",))
    assert details == ["SEARCH queue USING COVERING INDEX queue_due (state=?)"]


def test_new_mail_is_not_stuck_behind_a_due_backlog(store):
    now = time.time()
    old = insert(store, "deferred", [now - 10_000 + i for i in range(5000)], "D")
    new = insert(store, "incoming", [now - 1, now], "N")
    due = store.due(now, 10)
    assert len(due) == 10 and set(new) <= set(due)
    assert due[:4] == [new[0], old[0], new[1], old[1]]  # interleaved, oldest first
    assert store.next_retry() == now - 10_000


def test_due_gives_unused_slots_to_the_other_state(store):
    now = time.time()
    insert(store, "deferred", [now - 5, now - 4], "D")
    inc = insert(store, "incoming", [now - 3 + i * 0.01 for i in range(20)], "N")
    due = store.due(now, 10)
    assert len(due) == 10 and due.count("D00000000") == 1 and due.count("D00000001") == 1
    assert [q for q in due if q.startswith("N")] == inc[:8]


def test_due_ignores_future_active_and_hold(store):
    now = time.time()
    insert(store, "deferred", [now + 100], "F")
    insert(store, "active", [now - 100], "A")
    insert(store, "hold", [now - 100], "H")
    assert store.due(now, 10) == [] and store.due(now, 0) == []
    assert store.next_retry() == now + 100
