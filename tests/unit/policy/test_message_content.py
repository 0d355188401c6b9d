"""policy/message.py `content_in_hand` and policy/mailauth/findings.py `message_content`:
the whole message from what the header read already holds, else read as before."""

from __future__ import annotations

import pytest

from pigeon.policy.mailauth.findings import message_content
from pigeon.policy.message import MemoryMessage, SpoolMessage
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.store import QueueStore


@pytest.fixture
def store(tmp_path):
    s = QueueStore(tmp_path / "queue", fsync=False)
    s.open()
    yield s
    s.close()


def _spooled(store, content: bytes):
    spool = store.new_spool(Envelope("", "a@example.org", [Recipient("b@example.test")]))
    spool.write(content)
    return spool


def _read_apart(message) -> bytes:
    """The message as the general path reads it: header section, empty line, body stream."""
    head = message.header_section()
    if not head.endswith(b"\r\n\r\n"):
        head += b"\r\n" if head.endswith(b"\r\n") else b"\r\n\r\n"
    with message.body() as body:
        return head + body.read()


@pytest.mark.parametrize(
    "content",
    [
        b"From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n",
        b"From: a@example.org\r\n\r\n",
        b"From: a@example.org\r\nSubject: no body\r\n",  # no empty line
        b"From: a@example.org\r\n\r\n" + b"y" * 5000 + b"\r\n",
    ],
)
def test_the_content_is_the_same_however_it_is_read(store, content):
    spool = _spooled(store, content)
    try:
        for limit in (1 << 20, 64):  # all of it in the header read, or only its start
            message = SpoolMessage(spool, header_limit=limit, eight_bit=False)
            assert message_content(message) == _read_apart(message)
        memory = MemoryMessage(content)
        assert message_content(memory) == _read_apart(memory)
    finally:
        spool.discard()


def test_only_a_header_read_that_holds_everything_is_used(store):
    content = b"From: a@example.org\r\n\r\nbody\r\n"
    spool = _spooled(store, content)
    try:
        assert (
            SpoolMessage(spool, header_limit=1 << 20, eight_bit=False).content_in_hand() == content
        )
        # A read that stopped at its limit may have more after it.
        assert (
            SpoolMessage(spool, header_limit=len(content), eight_bit=False).content_in_hand()
            is None
        )
        assert SpoolMessage(spool, header_limit=10, eight_bit=False).content_in_hand() is None
    finally:
        spool.discard()
    no_body = _spooled(store, b"From: a@example.org\r\n")
    try:
        assert (
            SpoolMessage(no_body, header_limit=1 << 20, eight_bit=False).content_in_hand() is None
        )
    finally:
        no_body.discard()
    assert MemoryMessage(content).content_in_hand() == content
    assert MemoryMessage(b"From: a@example.org\r\n").content_in_hand() is None
