"""net/respool.py: header fields a verdict removes, the rest of the message kept."""

from __future__ import annotations

import pytest

from pigeon.net.respool import remove_fields, respool
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.store import QueueStore

SECTION = (
    b"Subject: hi\r\n"
    b"X-Spam: yes\r\n"
    b"x-spam : folded\r\n"
    b"\tsecond line\r\n"
    b"To: a@example.test\r\n"
    b"X-Spammy: kept\r\n"
)


def test_every_occurrence_goes_with_its_continuation_lines_and_only_those():
    assert remove_fields(SECTION, frozenset({"x-spam"})) == (
        b"Subject: hi\r\nTo: a@example.test\r\nX-Spammy: kept\r\n"
    )
    assert remove_fields(SECTION, frozenset({"nothing"})) == SECTION


@pytest.mark.parametrize("body", [b"short body\r\n", b"x" * 998 + b"\r\n" * 300_000])
def test_respool_writes_a_new_spool_without_the_fields(tmp_path, body):
    store = QueueStore(tmp_path / "queue", fsync=False)
    store.open()
    try:
        envelope = Envelope("", "s@example.test", [Recipient("a@example.test")])
        spool = store.new_spool(envelope)
        old_id = spool.queue_id
        received = f"Received: from x\r\n\tby me (pigeon) with ESMTP id {old_id}\r\n".encode()
        spool.write(received + SECTION + b"\r\n" + body)
        new = respool(store.new_spool, spool, ("X-Spam",), len(received), 1 << 20)
        assert new.queue_id != old_id and envelope.queue_id == new.queue_id
        with new.reader() as r:
            content = r.read()
        assert content == (
            received.replace(old_id.encode(), new.queue_id.encode())
            + b"Subject: hi\r\nTo: a@example.test\r\nX-Spammy: kept\r\n\r\n"
            + body
        )
        new.discard()
        # Nothing named: the spool itself, untouched.
        same = store.new_spool(Envelope("", "", [Recipient("a@example.test")]))
        same.write(received + b"Subject: x\r\n\r\nbody\r\n")
        assert respool(store.new_spool, same, ("X-Spam",), len(received), 1 << 20) is same
        same.discard()
    finally:
        store.close()
