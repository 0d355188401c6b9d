"""Fixtures shared by the queue tests: a real QueueStore in a temp dir."""

from __future__ import annotations

import pytest

from pigeon.queue.store import QueueStore


@pytest.fixture
def store(tmp_path):
    """An open QueueStore (fsync on) under tmp_path/queue."""
    s = QueueStore(tmp_path / "queue")
    s.open()
    yield s
    s.close()
