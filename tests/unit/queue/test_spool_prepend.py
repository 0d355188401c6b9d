"""Header fields put on top of a spool before its commit, the content read back
as a stream, and commits that start on hold (quarantine): queue/spool.py,
queue/store.py. Both commit paths: in memory and spilled to tmp/."""

from __future__ import annotations

import time

import pytest

from pigeon.msgfile import read_message
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.spool import SPILL_THRESHOLD
from pigeon.queue.store import QueueStore, StoreError
from pigeon.vocab.states import QueueState

RECEIVED = (
    b"Received: from client (client [192.0.2.1])\r\n\tby mx; Thu, 1 Jan 2026 00:00:00 +0000\r\n"
)
FIELDS = [b"Authentication-Results: mx; spf=pass\r\n", b"X-Check: one\r\n\tfolded\r\n"]


def env(qid: str) -> Envelope:
    return Envelope(qid, "a@example.test", [Recipient("b@example.test")], received_at=time.time())


@pytest.fixture(params=[True, False], ids=["fsync", "nofsync"])
def store(request, tmp_path):
    s = QueueStore(tmp_path / "queue", fsync=request.param)
    s.open()
    yield s
    s.close()


def message(size: int) -> bytes:
    head = RECEIVED + b"Subject: hi\r\n\r\n"
    line = b"0123456789" * 7 + b"\r\n"
    return head + (line * (size // len(line) + 1))[: max(0, size - len(head))]


@pytest.mark.parametrize("size", [1000, SPILL_THRESHOLD + 5000], ids=["memory", "spilled"])
def test_prepended_fields_go_above_everything_written(store, size):
    data = message(size)
    sp = store.new_spool()
    for i in range(0, len(data), 4096):
        sp.write(data[i : i + 4096])
    assert sp.in_memory == (size < SPILL_THRESHOLD)
    for field in FIELDS:
        sp.prepend(field)
    assert sp.size == len(data) + sum(map(len, FIELDS))  # counted as stored
    assert sp.head(len(RECEIVED)) == RECEIVED  # head() reads what write() wrote
    store.commit(sp, env(sp.queue_id))
    assert read_message(store.content_path(sp.queue_id)) == b"".join(FIELDS) + data
    assert not list((store.root / "tmp").iterdir())  # the spilled file is gone


def test_a_spool_that_is_not_open_takes_no_fields(store):
    sp = store.new_spool()
    sp.discard()
    with pytest.raises(StoreError):
        sp.prepend(FIELDS[0])


@pytest.mark.parametrize("size", [1000, SPILL_THRESHOLD + 5000], ids=["memory", "spilled"])
def test_reader_streams_the_content_from_an_offset(store, size):
    data = message(size)
    sp = store.new_spool()
    sp.write(data)
    start = data.index(b"\r\n\r\n") + 4
    with sp.reader(start) as body:
        assert body.read(5) == data[start : start + 5]
        assert body.read() == data[start + 5 :]
    with sp.reader() as whole:
        assert whole.read() == data
    sp.write(b"more\r\n")  # a closed reader holds nothing: the spool can grow
    store.commit(sp, env(sp.queue_id))
    assert read_message(store.content_path(sp.queue_id)) == data + b"more\r\n"


def test_an_in_memory_reader_does_not_copy_the_content(store):
    sp = store.new_spool()
    sp.write(message(2000))
    body = sp.reader()
    with pytest.raises(BufferError):  # the reader is a view of the spool's own memory
        sp.write(b"x")
    body.close()


def test_a_commit_on_hold_is_kept_from_delivery(store):
    held, due = store.new_spool(), store.new_spool()
    for sp in (held, due):
        sp.write(message(500))
    store.commit(held, env(held.queue_id), hold=True)
    store.commit(due, env(due.queue_id))
    states = store.states([held.queue_id, due.queue_id])
    assert states == {held.queue_id: QueueState.HOLD, due.queue_id: QueueState.INCOMING}
    assert store.due(time.time() + 10) == [due.queue_id]
