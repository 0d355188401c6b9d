"""What the queue manager tests share: a real QueueStore and Maildirs in a temp
dir, a recording mail log, a fake SMTP agent, and the manager built the way
the composition root builds it (the local Maildir agent beside the others),
with every seam injectable: clock, rng, store wrapper, Maildir batch writer."""

from __future__ import annotations

import asyncio
import email
import email.policy
import functools
import time
from pathlib import Path

from pigeon.config.schema import Config, DomainConfig
from pigeon.delivery.local import LocalAgent, MailboxStorage
from pigeon.delivery.maildir import deliver_batch
from pigeon.proto.params import MailParams
from pigeon.qmgr import Qmgr, QmgrSettings
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.store import QueueStore
from pigeon.routing.resolve import Router
from pigeon.testing.fakes import FakeAgent, FakeClock, RecordingMaillog


def two_mailboxes(tmp: Path, **kw) -> Config:
    """A local domain with the mailboxes alice and bob."""
    return Config(
        hostname="mx.example.test",
        data_dir=tmp,
        domains={"example.test": DomainConfig("example.test", frozenset({"alice", "bob"}))},
        **kw,
    )


def open_store(cfg: Config) -> QueueStore:
    store = QueueStore(cfg.queue_dir, fsync=False)
    store.open()
    return store


def make_qmgr(
    cfg: Config,
    store,
    maillog,
    *,
    agents=None,
    clock=time.time,
    rng=None,
    writer=None,
    **settings,
) -> Qmgr:
    """A Qmgr over `store` with the local agent and `agents` (settings as keywords)."""
    mailboxes = MailboxStorage(fsync=False)
    write = writer or functools.partial(deliver_batch, fsync=False, clock=clock)
    local = LocalAgent(mailboxes, fsync=False, clock=clock, writer=write)
    return Qmgr(
        store,
        Router(cfg),
        {**(agents or {}), "local": local},
        QmgrSettings(hostname=cfg.hostname, fsync=False, **settings),
        maillog=maillog,
        clock=clock,
        rng=rng,
        mailboxes=mailboxes,
    )


def commit(
    store: QueueStore,
    *rcpts: str | Recipient,
    sender: str = "sender@remote.test",
    body: bytes = b"Subject: t\r\n\r\nhi\r\n",
    received_at: float | None = None,
    **kw,
) -> Envelope:
    """Commit like the SMTP side does; the Envelope is what it hands to submit()."""
    sp = store.new_spool()
    sp.write(b"Received: by mx.example.test\r\n" + body)
    env = Envelope(
        sp.queue_id,
        sender,
        [r if isinstance(r, Recipient) else Recipient(r) for r in rcpts],
        received_at=time.time() if received_at is None else received_at,
        size=sp.size,
        **kw,
    )
    store.commit(sp, env)
    return env


def maildir_files(cfg: Config, local: str, domain: str = "example.test") -> list[Path]:
    new = cfg.mailbox_root / domain / local / "new"
    return sorted(new.iterdir()) if new.exists() else []


def removed(log: RecordingMaillog, *qids: str) -> bool:
    return all("removed" in log.statuses(q) for q in qids)


class ZeroRng:
    def uniform(self, a, b):
        return 0.0


class AttemptEnv:
    """One delivery run per `attempt()`, on a fake clock, with a fake SMTP agent."""

    def __init__(self, tmp: Path, **settings) -> None:
        self.cfg = two_mailboxes(tmp)
        self.store = open_store(self.cfg)
        self.log = RecordingMaillog()
        self.agent = FakeAgent()
        self.clock = FakeClock()
        self.mgr = make_qmgr(
            self.cfg,
            self.store,
            self.log,
            agents={"smtp": self.agent},
            clock=self.clock,
            rng=ZeroRng(),
            **settings,
        )

    def commit(
        self,
        *rcpts: str | Recipient,
        sender: str = "sender@example.test",
        params: MailParams = MailParams(),
        body: bytes = b"Subject: hello\r\nX-Test: 1\r\n\r\nthe body\r\n",
    ) -> str:
        env = commit(
            self.store, *rcpts, sender=sender, params=params, body=body, received_at=self.clock.now
        )
        return env.queue_id

    def attempt(self, qid: str) -> None:
        self.store.claim([qid], from_states=("incoming", "deferred"))
        asyncio.run(self.mgr.deliver(qid))

    def envelope(self, qid: str) -> Envelope:
        return self.store.load(qid)

    def others(self, qid: str) -> list[Envelope]:
        """Queue entries other than `qid` (the generated reports)."""
        return [e.envelope for e in self.store.list() if e.queue_id != qid]

    def report(self, env: Envelope):
        with self.store.content(env.queue_id).open() as fh:
            data = fh.read()
        return email.message_from_bytes(data, policy=email.policy.default)
