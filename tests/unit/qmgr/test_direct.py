"""qmgr/direct.py: local delivery at the accept, with the real router and Maildir writer.

What it must take (all-local, in memory, no success notice) and deliver
durably; what it must leave to the queue untouched; and the partial case,
where the copies written stay delivered and the rest is queued.
"""

from __future__ import annotations

import asyncio
import errno
import functools
from pathlib import Path

import pytest

from pigeon.config.schema import Config, DomainConfig
from pigeon.delivery.local import LocalAgent
from pigeon.delivery.maildir import MaildirJob, deliver_batch
from pigeon.proto.params import RcptParams
from pigeon.qmgr.direct import DirectDelivery, DirectOutcome
from pigeon.queue.model import Envelope, Recipient, RecipientStatus
from pigeon.routing.resolve import Router
from pigeon.testing.fakes import BytesContent

MESSAGE = b"Subject: hi\r\n\r\nbody\r\n"


def router(data_dir: Path) -> Router:
    return Router(
        Config(
            hostname="mx.example.test",
            data_dir=data_dir,
            domains={"example.test": DomainConfig("example.test", frozenset({"alice", "bob"}))},
            aliases={"team@example.test": ("alice@example.test", "bob@example.test")},
        )
    )


def envelope(*rcpts: str | Recipient) -> Envelope:
    rs = [r if isinstance(r, Recipient) else Recipient(r) for r in rcpts]
    return Envelope("Q1DIRECT", "s@src.test", rs, size=len(MESSAGE), received_at=1.0)


def delivered_files(data_dir: Path, user: str) -> list[Path]:
    return sorted((data_dir / "mailboxes" / "example.test" / user / "new").glob("*"))


def run(direct: DirectDelivery, env: Envelope) -> DirectOutcome | None:
    return asyncio.run(direct.deliver(env, BytesContent(MESSAGE)))


@pytest.fixture
def direct(tmp_path: Path) -> DirectDelivery:
    return DirectDelivery(router(tmp_path), LocalAgent(fsync=True), lambda o: None)


def test_all_local_mail_is_written_and_done(direct, tmp_path):
    env = envelope("team@example.test")  # an alias of two local mailboxes
    out = run(direct, env)
    assert out is not None and out.done
    assert [r.status for r in out.env.recipients] == [RecipientStatus.DELIVERED] * 2
    assert [f["status"] for f, _ in out.logs] == ["sent", "sent"]
    for user in ("alice", "bob"):
        (copy,) = delivered_files(tmp_path, user)
        text = copy.read_bytes()
        assert text.startswith(b"Return-Path: <s@src.test>\n")
        assert text.endswith(b"Subject: hi\n\nbody\n")  # CRLF -> LF in the Maildir


@pytest.mark.parametrize(
    "rcpts",
    [
        ("alice@example.test", "someone@remote.test"),  # another transport
        ("alice@example.test", "nobody@example.test"),  # an unknown mailbox: the queue bounces it
    ],
)
def test_mail_not_all_local_goes_to_the_queue_untouched(direct, tmp_path, rcpts):
    env = envelope(*rcpts)
    given = list(env.recipients)
    assert run(direct, env) is None
    assert env.recipients == given and all(a is b for a, b in zip(env.recipients, given))
    assert all(r.status is RecipientStatus.PENDING for r in env.recipients)
    assert delivered_files(tmp_path, "alice") == []


def test_a_success_notice_or_spilled_content_goes_to_the_queue(direct, tmp_path):
    notify = Recipient("alice@example.test", RcptParams(notify=("SUCCESS",)))
    assert run(direct, envelope(notify)) is None
    assert asyncio.run(direct.deliver(envelope("alice@example.test"), None)) is None
    assert delivered_files(tmp_path, "alice") == []


def test_copies_written_stay_delivered_and_the_rest_is_queued(tmp_path):
    def failing_bob(jobs: list[MaildirJob]):
        ok = [j for j in jobs if "/bob" not in str(j.maildir)]
        done = iter(deliver_batch(ok, fsync=True))
        full = OSError(errno.EDQUOT, "Disk quota exceeded")
        return [next(done) if j in ok else (0.0, 0.0, full) for j in jobs]

    agent = LocalAgent(writer=functools.partial(failing_bob))
    direct = DirectDelivery(router(tmp_path), agent, lambda o: None)
    out = run(direct, envelope("alice@example.test", "bob@example.test"))
    assert out is not None and not out.done
    status = {r.address: r.status for r in out.env.recipients}
    assert status == {
        "alice@example.test": RecipientStatus.DELIVERED,
        "bob@example.test": RecipientStatus.DEFERRED,
    }
    assert [(f["to"], f["status"]) for f, _ in out.logs] == [("alice@example.test", "sent")]
    assert len(delivered_files(tmp_path, "alice")) == 1
    assert delivered_files(tmp_path, "bob") == []
