"""Fixtures shared by the queue tests: a real QueueStore (and QueueManager) in a temp dir."""

from __future__ import annotations

import pytest

from pigeon.config.schema import Config
from pigeon.queue.manager import QueueManager
from pigeon.queue.store import QueueStore
from pigeon.routing.resolve import Router
from pigeon.testing.fakes import RecordingMaillog


@pytest.fixture
def store(tmp_path):
    """An open QueueStore (fsync on) under tmp_path/queue."""
    s = QueueStore(tmp_path / "queue")
    s.open()
    yield s
    s.close()


@pytest.fixture
def queue_world():
    """make(config, **manager_kwargs) -> (store, maillog, manager); stores are closed after."""
    stores: list[QueueStore] = []

    def make(cfg: Config, **kw) -> tuple[QueueStore, RecordingMaillog, QueueManager]:
        store = QueueStore(cfg.queue_dir, fsync=False)
        store.open()
        stores.append(store)
        log = RecordingMaillog()
        mgr = QueueManager(
            store, Router(cfg), hostname=cfg.hostname, maillog=log, fsync=False, **kw
        )
        return store, log, mgr

    yield make
    for store in stores:
        store.close()
