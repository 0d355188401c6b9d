"""`pigeon status`: the storage lines (queue/health.py, queue/space.py)."""

from __future__ import annotations

from pigeon.cli.status import format_status, format_storage

HEALTHY = {
    "queue": {"degraded": False},
    "mailbox": {"degraded": False},
    "space": {"free": 2 << 30, "reserve": 15_360_000, "low": False},
    "unsaved": 0,
    "requeue": 0,
}


def test_healthy_storage_is_one_short_pair_of_lines():
    assert format_storage(HEALTHY, now=0) == [
        "  storage:      queue ok; mailboxes ok",
        "  disk space:   2.0 GiB free, reserve 14.6 MiB (queue.min_free)",
    ]


def test_a_failing_disk_says_degraded_since_when_why_and_what_waits():
    st = {
        "queue": {
            "degraded": True,
            "since": 1000.0,
            "reason": "No space left on device",
            "failures": 12,
        },
        "mailbox": {
            "degraded": True,
            "since": 1030.0,
            "reason": "Input/output error",
            "failures": 1,
        },
        "space": {"free": 0, "reserve": 15_360_000, "low": True},
        "unsaved": 3,
        "requeue": 1,
    }
    assert format_storage(st, now=1090.0) == [
        "  storage:      queue DEGRADED for 90s (No space left on device; 12 failed writes); "
        "mailboxes DEGRADED for 60s (Input/output error; 1 failed writes); "
        "4 queue entries waiting for the store to take writes",
        "  disk space:   0.0 MiB free, reserve 14.6 MiB (queue.min_free): below the reserve, "
        "new mail refused with 452 4.3.1",
    ]


def test_status_includes_the_storage_lines():
    lines = format_status({"pid": 1, "uptime": 5, "queue": {"incoming": 0}, "storage": HEALTHY})
    assert "  storage:      queue ok; mailboxes ok" in lines


def test_status_lists_the_nodes_of_a_shared_queue():
    cluster = {
        "node": "node-b",
        "nodes": [
            {"name": "node-a", "state": "lost", "heartbeat_age": 600, "host": "mx1", "pid": 7},
            {
                "name": "node-b",
                "state": "alive",
                "heartbeat_age": 2,
                "host": "mx2",
                "pid": 9,
                "listen": "smtp 0.0.0.0:25",
            },
            {"name": "node-c", "state": "stopped", "heartbeat_age": None, "host": None},
        ],
    }
    lines = format_status({"pid": 1, "uptime": 5, "queue": {"incoming": 0}, "cluster": cluster})
    assert "this is node node-b; 1 of 3 nodes alive" in lines[-4]
    assert lines[-3].split() == [
        "node-a",
        "lost",
        "heartbeat",
        "10m",
        "ago;",
        "host",
        "mx1,",
        "pid",
        "7",
    ]
    assert lines[-2].endswith("heartbeat 2s ago; host mx2, pid 9, smtp 0.0.0.0:25")
    assert lines[-1].endswith("heartbeat never; never served")
    down = format_status({"pid": 1, "queue": {}, "cluster": {"node": "x", "error": "db down"}})
    assert down[-1] == "  cluster:      node x; nodes unknown: db down"
