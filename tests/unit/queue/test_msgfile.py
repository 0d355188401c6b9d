"""The content file preamble (pigeon/msgfile.py): round trip, truncation,
garbage, files without a preamble, and what the store writes."""

from __future__ import annotations

import errno
import io
import json
import os
import time

import pytest

from pigeon import msgfile
from pigeon.msgfile import (
    HEADER_LEN,
    MAGIC,
    PreambleError,
    encode,
    new_store_id,
    open_message,
    read_message,
    read_preamble,
)
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.spool import SPILL_THRESHOLD
from pigeon.queue.store import QueueStore

STORE = "0123456789abcdef0123456789abcdef"
MESSAGE = b"Received: by test\r\nSubject: hi\r\n\r\nbody\r\n"


def envelope(qid: str = "01ABCDEFGH00XYZ") -> Envelope:
    return Envelope(
        qid,
        "alice@example.test",
        [Recipient("bob@example.test")],
        received_at=1_700_000_000.5,
        size=len(MESSAGE),
        protocol="ESMTP",
    )


def file_bytes(env: Envelope | None = None, *, draft: bool = False, store: str = STORE) -> bytes:
    raw = b"null" if env is None else json.dumps(env.to_dict()).encode()
    return encode(store, raw, draft=draft) + MESSAGE


def test_round_trip_envelope_store_id_and_message(tmp_path):
    env = envelope()
    data = file_bytes(env)
    assert data.startswith(MAGIC) and data.index(b"\n") + 1 == HEADER_LEN
    pre = read_preamble(io.BytesIO(data))
    assert pre.store_id == STORE and not pre.draft and pre.envelope_error == ""
    assert Envelope.from_dict(pre.envelope) == env
    assert data[pre.offset :] == MESSAGE
    path = tmp_path / "m"
    path.write_bytes(data)
    fh, size = open_message(path)
    with fh:
        assert size == len(MESSAGE) and fh.read() == MESSAGE
    assert read_message(path) == MESSAGE
    # The preamble is two text lines, for `head -2`.
    first, second, rest = data.split(b"\n", 2)
    assert json.loads(second) == env.to_dict() and rest == MESSAGE


def test_draft_flag_and_null_envelope_round_trip():
    pre = read_preamble(io.BytesIO(file_bytes(None, draft=True)))
    assert pre.draft and pre.envelope is None and pre.envelope_error == ""


def test_a_file_without_preamble_is_the_older_format(tmp_path):
    path = tmp_path / "legacy"
    path.write_bytes(MESSAGE)
    assert read_preamble(io.BytesIO(MESSAGE)) is None
    assert read_message(path) == MESSAGE
    fh, size = open_message(path)
    fh.close()
    assert size == len(MESSAGE)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert read_message(empty) == b""


@pytest.mark.parametrize("cut", [0, 1, len(MAGIC) - 1, len(MAGIC), HEADER_LEN - 1])
def test_cut_inside_the_first_line_is_a_fragment(cut):
    data = file_bytes(envelope())[:cut]
    with pytest.raises(PreambleError) as ei:
        read_preamble(io.BytesIO(data))
    assert ei.value.fragment


def test_cut_inside_the_envelope_keeps_the_store_id():
    data = file_bytes(envelope())
    for cut in (HEADER_LEN, HEADER_LEN + 10, data.index(MESSAGE) - 1):
        pre = read_preamble(io.BytesIO(data[:cut]))
        assert pre.store_id == STORE and pre.envelope is None
        assert "cut short" in pre.envelope_error or "line end" in pre.envelope_error


def test_cut_inside_the_message_is_a_shorter_message(tmp_path):
    data = file_bytes(envelope())
    path = tmp_path / "m"
    path.write_bytes(data[:-5])
    assert read_message(path) == MESSAGE[:-5]
    assert read_preamble(io.BytesIO(data[:-5])).envelope is not None


def test_garbage_envelope_is_caught_by_the_checksum():
    data = bytearray(file_bytes(envelope()))
    data[HEADER_LEN + 20] ^= 0x01  # one flipped bit in the JSON
    pre = read_preamble(io.BytesIO(bytes(data)))
    assert pre.envelope is None and "checksum" in pre.envelope_error


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[: len(MAGIC)] + b"v9" + d[len(MAGIC) + 2 :],  # unknown version
        lambda d: d[:30] + b"zz" + d[32:],  # not hex
        lambda d: d[: HEADER_LEN - 1] + b" " + d[HEADER_LEN:],  # no line end
        lambda d: MAGIC + os.urandom(300),  # random after magic
    ],
)
def test_a_damaged_first_line_is_an_error_not_a_guess(damage, tmp_path):
    data = damage(file_bytes(envelope()))
    with pytest.raises(PreambleError) as ei:
        read_preamble(io.BytesIO(data))
    assert not ei.value.fragment
    path = tmp_path / "m"
    path.write_bytes(data)
    with pytest.raises(OSError) as oi:  # readers: an unreadable file
        open_message(path)
    assert oi.value.errno == errno.EBADMSG


def test_random_garbage_without_magic_is_not_taken_for_a_preamble():
    for seed in range(50):
        data = bytes((seed * 37 + i * 11) % 256 for i in range(400))
        if data.startswith(MAGIC[:1]):
            continue
        assert read_preamble(io.BytesIO(data)) is None


def test_implausible_envelope_length_is_not_read():
    head = encode(STORE, b"{}")
    big = head.replace(b"envelope=00000002", b"envelope=7fffffff")
    pre = read_preamble(io.BytesIO(big + MESSAGE))
    assert pre.envelope is None and "implausible" in pre.envelope_error


def test_rewrite_store_id_changes_only_the_id(tmp_path):
    path = tmp_path / "m"
    path.write_bytes(file_bytes(envelope()))
    other = new_store_id()
    msgfile.rewrite_store_id(path, other, fsync=True)
    with open(path, "rb") as fh:
        pre = read_preamble(fh)
    assert pre.store_id == other and Envelope.from_dict(pre.envelope) == envelope()
    assert read_message(path) == MESSAGE


# --- what the store writes ---------------------------------------------------------------


def preamble_of(store: QueueStore, qid: str) -> msgfile.Preamble:
    with open(store.content_path(qid), "rb") as fh:
        return read_preamble(fh)


def test_in_memory_commit_writes_the_committed_envelope(store):
    sp = store.new_spool()
    sp.write(MESSAGE)
    env = Envelope(
        sp.queue_id,
        "a@example.test",
        [Recipient("b@example.test")],
        received_at=time.time(),
        size=sp.size,
        eight_bit=True,
    )
    store.commit(sp, env)
    pre = preamble_of(store, sp.queue_id)
    assert pre.store_id == store.store_id and not pre.draft
    assert Envelope.from_dict(pre.envelope) == env
    fh, size = store.open_content(sp.queue_id)
    with fh:
        assert fh.read() == MESSAGE and size == len(MESSAGE)


def test_spilled_spool_begins_with_the_draft_envelope(store):
    draft = Envelope("", "a@example.test", [Recipient("b@example.test")], received_at=1.0)
    sp = store.new_spool(draft)
    assert draft.queue_id == sp.queue_id
    big = b"Subject: big\r\n\r\n" + b"x" * (SPILL_THRESHOLD + 10) + b"\r\n"
    sp.write(big)
    assert not sp.in_memory and sp.size == len(big)
    assert sp.head(14) == b"Subject: big\r\n"  # head() skips the preamble
    final = Envelope(
        sp.queue_id, "a@example.test", [Recipient("b@example.test")], received_at=2.0, size=sp.size
    )
    store.commit(sp, final)
    pre = preamble_of(store, sp.queue_id)
    assert pre.draft and pre.store_id == store.store_id
    assert Envelope.from_dict(pre.envelope) == draft
    assert read_message(store.content_path(sp.queue_id)) == big
    assert store.load(sp.queue_id) == final  # the row has the final one


def test_write_all_finishes_short_writes(tmp_path, monkeypatch):
    real = os.writev
    calls = []

    def short(fd, parts):  # at most 7 octets per call
        calls.append(1)
        data = b"".join(bytes(p) for p in parts)[:7]
        return real(fd, [data])

    monkeypatch.setattr(msgfile.os, "writev", short)
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        msgfile.write_all(fd, [b"preamble\n", bytearray(b"content " * 5), b"", b"end"])
    finally:
        os.close(fd)
    assert path.read_bytes() == b"preamble\n" + b"content " * 5 + b"end"
    assert len(calls) == -(-len(path.read_bytes()) // 7)


def test_readers_of_queued_content_never_see_the_preamble(store, tmp_path):
    from pigeon.admin.query import read_headers
    from pigeon.delivery.downgrade import downgrade_to_7bit
    from pigeon.delivery.maildir import MaildirJob, deliver_batch
    from pigeon.qmgr.bounce import build_dsn

    sp = store.new_spool()
    sp.write(
        b"Received: by test\r\nSubject: cafe\r\nContent-Type: text/plain\r\n\r\n\xc3\xa9\r\n"
    )  # an 8-bit body
    env = Envelope(
        sp.queue_id,
        "a@example.test",
        [Recipient("b@example.test")],
        received_at=time.time(),
        size=sp.size,
        eight_bit=True,
    )
    store.commit(sp, env)
    path = store.content_path(sp.queue_id)
    content = store.content(sp.queue_id)
    box = tmp_path / "Maildir"
    ((_, _, err),) = deliver_batch([MaildirJob(box, content, "a@example.test")], fsync=False)
    assert err is None
    (delivered,) = (box / "new").iterdir()
    assert delivered.read_bytes() == (
        b"Return-Path: <a@example.test>\n" + read_message(path).replace(b"\r\n", b"\n")
    )
    assert read_headers(path).startswith("Received: by test\n")
    out = io.BytesIO()
    downgrade_to_7bit(content, out)
    assert out.getvalue().startswith(b"Received: by test\r\n") and out.getvalue().isascii()
    report = build_dsn(
        env,
        [],
        kind="failure",
        reporting_mta="mx.example.test",
        arrival_date=env.received_at,
        content=content,
        now=time.time(),
    )
    assert b"#pigeon-queue-file" not in report and b"Subject: cafe" in report
