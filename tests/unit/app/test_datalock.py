"""pigeon.app.datalock: one pigeon per data directory, refused in one line, waited for
by the process `pigeon restart` starts. flock() locks belong to open files, so two
DataDirLock objects of one process exclude each other as two processes would.

(Two real `pigeon serve`: tests/e2e/test_restart.py.)
"""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from pigeon.app.datalock import DataDirInUse, DataDirLock


def test_the_second_holder_is_refused_naming_the_first(tmp_path):
    first, second = DataDirLock(tmp_path), DataDirLock(tmp_path)
    first.acquire()
    try:
        assert (tmp_path / "pigeon.lock").read_text() == f"{os.getpid()}\n"
        assert stat.S_IMODE(os.stat(tmp_path / "pigeon.lock").st_mode) == 0o600
        with pytest.raises(DataDirInUse) as refused:
            second.acquire()
        assert str(refused.value) == (
            f"the data directory {tmp_path} is in use by pigeon (pid {os.getpid()}); "
            "stop it first or use 'pigeon restart'"
        )
        assert not second.held
    finally:
        first.release()
    second.acquire()  # released: free again (the file stays)
    second.release()


def test_a_lock_file_left_behind_holds_nothing(tmp_path):
    (tmp_path / "pigeon.lock").write_text("4242\n")  # a crash: the kernel dropped its lock
    lock = DataDirLock(tmp_path)
    lock.acquire()
    assert (tmp_path / "pigeon.lock").read_text() == f"{os.getpid()}\n"
    lock.release()


def test_the_successor_waits_until_the_lock_is_released(tmp_path):
    async def scenario() -> None:
        old, new = DataDirLock(tmp_path), DataDirLock(tmp_path)
        old.acquire()
        waiting = asyncio.ensure_future(new.wait(30.0))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        old.release()
        assert await asyncio.wait_for(waiting, 10) is True
        assert new.held
        new.release()

    asyncio.run(scenario())


def test_the_wait_is_bounded_and_ends_when_asked_to_stop(tmp_path):
    async def scenario() -> None:
        old, new = DataDirLock(tmp_path), DataDirLock(tmp_path)
        old.acquire()
        assert await new.wait(0.2) is False
        stop = asyncio.Event()
        stop.set()
        assert await new.wait(30.0, stop) is False
        assert new.wait_blocking(0.2) is False
        old.release()
        assert new.wait_blocking(5.0) is True
        new.release()

    asyncio.run(asyncio.wait_for(scenario(), 60))
