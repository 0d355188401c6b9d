"""LocalAgent (delivery/local.py): the Maildir transport as an ordinary delivery agent.

Real Maildirs in a temp dir; content through MessageContent handles; the
batch writer injected where a test needs the disk to fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging

import pytest

from pigeon.delivery.api import DeliveryRecipient, DeliveryRequest, Outcome
from pigeon.delivery.local import LocalAgent, MailboxStorage
from pigeon.proto.params import MailParams
from pigeon.testing.conformance import check_delivery_agent
from pigeon.testing.fakes import BytesContent
from pigeon.vocab import Nexthop

LOCAL = Nexthop("local", "example.test")
CONTENT = b"Received: by mx\r\nSubject: hi\r\n\r\nbody\r\n"


class WithMailboxes:
    """The router's part for the conformance suite: every recipient gets a Maildir."""

    def __init__(self, root, **kw) -> None:
        self.root = root
        self.agent = LocalAgent(fsync=False, **kw)

    async def deliver(self, request: DeliveryRequest):
        rcpts = tuple(
            dataclasses.replace(r, mailbox=self.root / r.address, delivered_to=r.address)
            for r in request.recipients
        )
        return await self.agent.deliver(dataclasses.replace(request, recipients=rcpts))


def test_local_agent_passes_the_agent_conformance_suite(tmp_path):
    check_delivery_agent(lambda: WithMailboxes(tmp_path), nexthop=LOCAL)
    delivered = list(tmp_path.glob("*/new/*"))
    assert delivered and all(p.read_bytes().startswith(b"Return-Path: <") for p in delivered)


def test_local_agent_without_maildirs_still_conforms():
    check_delivery_agent(lambda: LocalAgent(fsync=False), nexthop=LOCAL)


def request(tmp_path, *names: str, content=CONTENT, sender="s@src.test", qid="Q1"):
    rcpts = tuple(
        DeliveryRecipient(
            f"{n}@example.test",
            mailbox=tmp_path / n,
            delivered_to=f"{n}@example.test",
            original_to="team@example.test" if n == "bob" else "",
        )
        for n in names
    )
    return DeliveryRequest(
        qid,
        sender,
        MailParams(),
        rcpts,
        BytesContent(content),
        len(content or b""),
        False,
        False,
        LOCAL,
    )


def test_results_in_request_order_with_the_headers_of_each_copy(tmp_path):
    agent = LocalAgent(fsync=False)
    res = asyncio.run(agent.deliver(request(tmp_path, "alice", "bob")))
    assert [(r.address, r.outcome, r.status, r.diagnostic, r.action) for r in res] == [
        ("alice@example.test", Outcome.DELIVERED, "2.0.0", "delivered to maildir", "delivered"),
        ("bob@example.test", Outcome.DELIVERED, "2.0.0", "delivered to maildir", "delivered"),
    ]
    ((bob,),) = [list((tmp_path / "bob" / "new").iterdir())]
    assert bob.read_bytes() == (
        b"Return-Path: <s@src.test>\nX-Original-To: team@example.test\n"
        b"Delivered-To: bob@example.test\n" + CONTENT.replace(b"\r\n", b"\n")
    )
    assert res[0].timings[0] == 0.0 and res[0].timings[1] >= 0.0


def test_the_messages_finishing_together_are_one_group_commit(tmp_path):
    """Many requests at once: their Maildir writes go in one worker-thread
    call (one fsync per new/ directory: delivery/maildir.py deliver_batch)."""
    agent = LocalAgent(fsync=True)

    async def main():
        reqs = [request(tmp_path, "alice", "bob", qid=f"Q{i}") for i in range(20)]
        return await asyncio.gather(*(agent.deliver(r) for r in reqs))

    results = asyncio.run(main())
    assert all(r.outcome is Outcome.DELIVERED for rs in results for r in rs)
    assert len(list((tmp_path / "alice" / "new").iterdir())) == 20
    assert agent.batches == 1


def test_unreadable_content_is_deferred_not_bounced(tmp_path):
    res = asyncio.run(LocalAgent(fsync=False).deliver(request(tmp_path, "alice", content=None)))
    assert (res[0].outcome, res[0].status, res[0].storage_fault) == (
        Outcome.DEFERRED,
        "4.3.0",
        False,
    )
    assert res[0].diagnostic.startswith("maildir delivery failed: ")


def failing_writer(err: OSError):
    def write(jobs):
        return [(0.0, 0.0, err) for _ in jobs]

    return write


def test_a_full_disk_is_our_storage_4_3_1_and_marks_the_mailboxes_degraded(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="pigeon.queue")
    storage = MailboxStorage(fsync=False)
    agent = LocalAgent(storage, writer=failing_writer(OSError(errno.ENOSPC, "No space left")))
    (res,) = asyncio.run(agent.deliver(request(tmp_path, "alice")))
    assert (res.outcome, res.status, res.storage_fault) == (Outcome.DEFERRED, "4.3.1", True)
    assert res.diagnostic == "maildir delivery failed: mail system full: No space left"
    assert storage.health.degraded and storage.probe_dir == tmp_path / "alice" / "tmp"


def test_a_mailbox_over_quota_is_not_our_storage(tmp_path):
    storage = MailboxStorage(fsync=False)
    agent = LocalAgent(storage, writer=failing_writer(OSError(errno.EDQUOT, "Disk quota exceeded")))
    (res,) = asyncio.run(agent.deliver(request(tmp_path, "alice")))
    assert (res.status, res.storage_fault) == ("4.2.2", False)
    assert not storage.health.degraded and storage.probe_dir is None


@pytest.mark.parametrize("exists", [True, False])
def test_the_probe_ends_an_episode_or_gives_up_on_a_vanished_maildir(tmp_path, exists):
    storage = MailboxStorage(fsync=False)
    storage.health.quiet = 0.0
    box = tmp_path / "alice"
    (box / "tmp").mkdir(parents=True)
    storage.failed(OSError(errno.EIO, "Input/output error"), box)
    if not exists:
        (box / "tmp").rmdir()
    storage.probe()
    assert storage.health.degraded is not exists
    assert (storage.probe_dir is None) is not exists
    if exists:
        assert list((box / "tmp").iterdir()) == []  # the probe file is gone
