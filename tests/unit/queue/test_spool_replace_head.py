"""Spool.replace_head (queue/spool.py) under the content changes of verdicts
(policy/edits.py apply_content_changes), in memory and spilled: header edits
rewrite only the header section, a new body replaces the rest, prepended
fields stay on top. The `store` fixture is tests/unit/queue/conftest.py's."""

from __future__ import annotations

import time

import pytest

from pigeon.policy.api import HeaderEdit, HeaderField, NewSender, Verdict
from pigeon.policy.edits import apply_content_changes
from pigeon.policy.message import SpoolMessage
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.spool import SPILL_THRESHOLD
from pigeon.queue.store import StoreError
from pigeon.testing.storage import content_bytes
from pigeon.vocab.address import Address

# Our Received: field (folded), then the client's fields.
SECTION = b"Received: by mx\r\n\tid 1\r\nFrom: a@example.test\r\nSubject: hello\r\n"


def _spool(store, size):
    body = (b"0123456789" * 7 + b"\r\n") * (size // 72 + 1)
    spool = store.new_spool()
    spool.write(SECTION + b"\r\n" + body)
    return spool, body


def _commit(store, spool):
    env = Envelope(spool.queue_id, "a@example.test", [Recipient("b@example.test")])
    env.received_at = time.time()
    store.commit(spool, env)
    return content_bytes(store, spool.queue_id)


SIZES = pytest.mark.parametrize("size", [1000, SPILL_THRESHOLD + 5000], ids=["memory", "spilled"])


@SIZES
def test_header_edits_rewrite_the_head_and_keep_the_body(store, size):
    spool, body = _spool(store, size)
    assert spool.in_memory == (size < SPILL_THRESHOLD)
    message = SpoolMessage(spool, header_limit=65536, eight_bit=False)
    verdict = Verdict(
        headers=(HeaderField("X-Prepended", "above all"),),
        header_edits=(HeaderEdit("insert", "DKIM-Signature", "v=1", 0),),
    )
    apply_content_changes(spool, message, verdict)
    spool.prepend(verdict.headers[0].to_bytes())  # as net/intake.py does, after
    stored = _commit(store, spool)
    assert stored == b"X-Prepended: above all\r\nDKIM-Signature: v=1\r\n" + SECTION + b"\r\n" + body
    assert spool.size == len(stored)


@SIZES
def test_a_new_body_replaces_everything_after_the_header(store, size):
    spool, _ = _spool(store, size)
    message = SpoolMessage(spool, header_limit=65536, eight_bit=False)
    verdict = Verdict(
        header_edits=(HeaderEdit("change", "Subject", "changed", 1),), body=b"new\r\n"
    )
    apply_content_changes(spool, message, verdict)
    stored = _commit(store, spool)
    assert stored == SECTION.replace(b"hello", b"changed") + b"\r\nnew\r\n"


def test_a_message_without_a_body_gets_no_empty_line(store):
    spool = store.new_spool()
    spool.write(SECTION)  # no empty line, no body (RFC 5322 §3.5: the body is optional)
    message = SpoolMessage(spool, header_limit=65536, eight_bit=False)
    apply_content_changes(spool, message, Verdict(header_edits=(HeaderEdit("add", "X", "y"),)))
    assert _commit(store, spool) == SECTION + b"X: y\r\n"


def test_nothing_to_change_leaves_the_spool_alone(store):
    spool, body = _spool(store, 100)
    message = SpoolMessage(spool, header_limit=65536, eight_bit=False)
    apply_content_changes(spool, message, Verdict(sender=NewSender(Address("x", "y.test"))))
    assert not spool.has_fields
    assert _commit(store, spool) == SECTION + b"\r\n" + body


def test_replace_head_once_and_within_the_content(store):
    spool, _ = _spool(store, 100)
    with pytest.raises(StoreError):
        spool.replace_head(spool.size + 1, b"x")
    spool.replace_head(3, b"abc")
    with pytest.raises(StoreError):
        spool.replace_head(3, b"abc")
    spool.discard()
    with pytest.raises(StoreError):
        spool.replace_head(0, b"")


def test_the_in_memory_content_has_the_head_replaced(store):
    # What local delivery at the accept writes (qmgr/direct.py) is what the
    # commit would have written.
    spool, body = _spool(store, 100)
    spool.replace_head(len(SECTION), b"New: head\r\n")
    spool.prepend(b"X-Top: 1\r\n")
    content = spool.memory_content()
    assert content is not None and content.size == spool.size
    with content.open() as stream:
        assert stream.read() == b"X-Top: 1\r\nNew: head\r\n\r\n" + body
