"""Fixtures of the queue manager tests (helpers: qmgr_env.py)."""

from __future__ import annotations

import pytest
from qmgr_env import make_qmgr, open_store

from pigeon.config.schema import Config
from pigeon.qmgr import Qmgr
from pigeon.queue.store import QueueStore
from pigeon.testing.fakes import RecordingMaillog


@pytest.fixture
def queue_world():
    """make(config, **manager_kwargs) -> (store, maillog, manager); stores are closed after."""
    stores: list[QueueStore] = []

    def make(cfg: Config, **kw) -> tuple[QueueStore, RecordingMaillog, Qmgr]:
        store = open_store(cfg)
        stores.append(store)
        log = RecordingMaillog()
        return store, log, make_qmgr(cfg, store, log, **kw)

    yield make
    for store in stores:
        store.close()
