"""What the queue manager tests share: a local domain with two mailboxes, an open
store without fsync, a recording mail log and a fake SMTP agent."""

from __future__ import annotations

from pathlib import Path

from pigeon.config.schema import Config, DomainConfig
from pigeon.queue.store import QueueStore
from pigeon.testing.fakes import FakeAgent, RecordingMaillog


def manager_parts(tmp: Path) -> tuple[Config, QueueStore, RecordingMaillog, FakeAgent]:
    cfg = Config(
        hostname="mx.example.test",
        data_dir=tmp,
        domains={"example.test": DomainConfig("example.test", frozenset({"alice", "bob"}))},
    )
    store = QueueStore(cfg.queue_dir, fsync=False)
    store.open()
    return cfg, store, RecordingMaillog(), FakeAgent()
