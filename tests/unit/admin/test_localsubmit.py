"""Local submission fix-ups (Postfix cleanup for sendmail) and the queue write."""

from __future__ import annotations

import pytest

from pigeon.admin import localsubmit as L
from pigeon.queue.store import QueueStore
from pigeon.testing.storage import content_bytes

KW = dict(
    sender="root@example.test", fullname="", hostname="mx.example.test", domain="example.test"
)


def test_extract_recipients_removes_bcc_and_adds_missing_fields():
    raw = (
        b"From x\nTo: Bob <bob@example.org>, carol\nCc: dave@example.org\n"
        b"Bcc: secret@example.org,\n  other@example.org\nSubject: hi\n\nbody\r\nline\rlast\n"
    )
    p = L.prepare(raw, recipients=["extra@example.org"], extract=True, **KW)
    assert p.recipients == [
        "extra@example.org",
        "bob@example.org",
        "carol@example.test",
        "dave@example.org",
        "secret@example.org",
        "other@example.org",
    ]
    head = b"".join(p.headers)
    assert b"Bcc" not in head and b"secret" not in head
    assert head.startswith(b"To: Bob <bob@example.org>, carol\r\n")
    assert b"From: root@example.test\r\n" in head
    assert b"\r\nDate: " in head and b"Message-ID: <" in head and b"@mx.example.test>" in head
    assert p.body == b"body\r\nline\r\nlast\r\n"


def test_resent_fields_win_with_t():
    raw = b"To: old@example.org\nResent-To: new@example.org\nFrom: a@b.test\n\nx\n"
    p = L.prepare(raw, recipients=[], extract=True, **KW)
    assert p.recipients == ["new@example.org"]


def test_existing_fields_are_kept_and_fullname_is_used():
    raw = b"Date: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <x@y>\n\nhi\n"
    p = L.prepare(
        raw, recipients=["bob@example.org"], extract=False, **{**KW, "fullname": "Cron Daemon"}
    )
    head = b"".join(p.headers)
    assert head.count(b"Date:") == 1 and head.count(b"Message-ID:") == 1
    assert b"From: Cron Daemon <root@example.test>\r\n" in head


def test_body_without_headers():
    p = L.prepare(b"just a line\n", recipients=["bob@example.org"], extract=False, **KW)
    assert p.body == b"just a line\r\n" and not p.has_header_section


def test_errors_carry_sysexits_codes():
    with pytest.raises(L.SubmitError) as e:
        L.prepare(b"Subject: x\n\n", recipients=[], extract=True, **KW)
    assert e.value.code == L.EX_USAGE
    with pytest.raises(L.SubmitError) as e:
        L.prepare(b"\n", recipients=["bad address@@x"], extract=False, **KW)
    assert e.value.code == L.EX_NOUSER


def test_enqueue_commits_with_received_first(tmp_path):
    p = L.prepare(b"Subject: x\n\nhi\n", recipients=["bob@example.org"], extract=False, **KW)
    with QueueStore(tmp_path, fsync=False) as store:
        env = L.enqueue(
            store,
            p,
            sender="root@example.test",
            hostname="mx.example.test",
            uid=1000,
            now=1_800_000_000.0,
        )
        data = content_bytes(store, env.queue_id)
        assert data.startswith(
            b"Received: from local user (uid 1000)\r\n\tby mx.example.test "
            b"(pigeon) with local id " + env.queue_id.encode()
        )
        assert data.endswith(b"\r\n\r\nhi\r\n")
        assert env.size == len(data) and env.protocol == "local"
        assert store.entry(env.queue_id).state == "incoming"
        with pytest.raises(L.SubmitError) as e:
            L.enqueue(store, p, sender="", hostname="h", uid=0, now=0.0, max_size=10)
        assert e.value.code == L.EX_DATAERR
