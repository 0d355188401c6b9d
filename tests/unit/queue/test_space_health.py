"""The free-space reserve (queue/space.py) and storage health (queue/health.py):
pure logic, fake clocks."""

from __future__ import annotations

import errno
import logging
import os

from pigeon.queue.health import StorageHealth
from pigeon.queue.space import FreeSpace

MiB = 1 << 20


class FakeFs:
    """statvfs of a file system whose free space the test sets; counts calls."""

    def __init__(self, free: int) -> None:
        self.free, self.calls = free, 0

    def __call__(self, path: str) -> os.statvfs_result:
        self.calls += 1
        blocks = self.free // 4096
        return os.statvfs_result((4096, 4096, 1 << 20, blocks, blocks, 0, 0, 0, 0, 255))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def space(free: int, *, min_free: int = 0, message_size: int = 10_240_000):
    fs, clock = FakeFs(free), Clock()
    return (
        FreeSpace("/q", min_free=min_free, message_size=message_size, clock=clock, statvfs=fs),
        fs,
        clock,
    )


def test_the_reserve_is_min_free_or_one_and_a_half_message_sizes():
    assert space(0)[0].reserve == 15_360_000  # Postfix's floor
    assert space(0, min_free=100 * MiB)[0].reserve == 100 * MiB
    assert space(0, min_free=0, message_size=0)[0].reserve == 0


def test_mail_is_refused_below_the_reserve_and_when_size_would_cross_it():
    sp, fs, clock = space(20 * MiB, min_free=16 * MiB, message_size=0)
    assert sp.room_for(0) and sp.room_for(4 * MiB)
    assert not sp.room_for(5 * MiB)  # SIZE= would take it below
    assert not sp.low  # that refuses one message only
    fs.free, clock.now = 15 * MiB, clock.now + 1
    assert not sp.room_for(0) and sp.low


def test_acceptance_comes_back_only_above_reserve_plus_margin(caplog):
    caplog.set_level(logging.INFO, logger="pigeon.queue")
    sp, fs, clock = space(10 * MiB, min_free=16 * MiB, message_size=0)
    assert not sp.room_for(0)
    for free in (16 * MiB, 17 * MiB, int(17.5 * MiB)):  # margin: max(1.6 MiB, 1 MiB)
        fs.free, clock.now = free, clock.now + 1
        assert not sp.room_for(0), free
    fs.free, clock.now = 18 * MiB, clock.now + 1
    assert sp.room_for(0) and not sp.low
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "below the reserve of 16.0 MiB (queue.min_free)" in lines[0]
    assert "18.0 MiB free again" in lines[1]


def test_statvfs_is_cached_and_commits_lower_the_cached_value():
    sp, fs, clock = space(40 * MiB, min_free=16 * MiB, message_size=0)
    for _ in range(1000):
        sp.room_for(0)
    assert fs.calls == 1  # one system call per ttl, not per command
    for _ in range(25):  # 25 MB committed before the next reading
        sp.consumed(1 * MiB)
    assert not sp.room_for(0)  # not fooled by the stale reading
    clock.now += sp.ttl
    sp.room_for(0)
    assert fs.calls == 2


def test_no_reserve_never_calls_statvfs():
    sp, fs, _ = space(0, min_free=0, message_size=0)
    assert sp.room_for(10**12) and fs.calls == 0


def test_a_failing_statvfs_lets_the_commit_decide():
    def broken(path):
        raise OSError(errno.ENOENT, "gone")

    sp = FreeSpace("/q", min_free=MiB, statvfs=broken)
    assert sp.room_for(0)


# --- StorageHealth ---------------------------------------------------------------------


def test_one_line_when_storage_fails_and_one_when_it_recovers(caplog):
    caplog.set_level(logging.DEBUG, logger="pigeon.queue")
    clock = Clock()
    h = StorageHealth("queue", quiet=3.0, clock=clock)
    assert h.failed(OSError(errno.ENOSPC, "No space left on device"))
    for _ in range(50):
        clock.now += 0.5
        assert not h.failed(OSError(errno.ENOSPC, "No space left on device"))
        assert not h.succeeded()  # a small write between failures: still degraded
    assert h.degraded and h.snapshot()["failures"] == 51
    clock.now += 3.0
    assert h.succeeded() and not h.degraded
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert lines == [
        "queue storage failing: No space left on device; writes are retried until it recovers",
        "queue storage recovered after 28s (51 failed writes)",
    ]
    assert not [r for r in caplog.records if r.exc_info]
    assert h.snapshot() == {
        "degraded": False,
        "since": None,
        "reason": "",
        "failures": 0,
        "episodes": 1,
    }
