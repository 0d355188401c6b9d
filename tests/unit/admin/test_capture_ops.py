"""Captured mail through the control socket against a real store and queue
manager (admin/capture.py, qmgr/capture.py), and a queue rebuilt from its
files keeping captured mail captured (queue/recovery.py)."""

from __future__ import annotations

import base64
import time
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from pigeon.admin.client import ControlClient, RemoteError
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.spool import SPILL_THRESHOLD
from pigeon.queue.store import QueueStore
from pigeon.testing.storage import content_bytes
from pigeon.vocab import QueueState


def capture(b, tenant: str, subject: str, *, rcpt="bob@dev.example", age=0.0, html=False) -> str:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "app@example.org", rcpt, subject
    msg.set_content("plain text of " + subject)
    if html:
        msg.add_alternative("<p>html</p>", subtype="html")
        msg.add_attachment(b"\x00\x01\x02", maintype="application", subtype="pdf", filename="a.pdf")
    raw = b"Received: by mx.example.test\r\n" + msg.as_bytes(policy=SMTP)
    sp = b.store.new_spool()
    sp.write(raw)
    env = Envelope(sp.queue_id, "app@example.org", [Recipient(rcpt)], size=len(raw))
    env.received_at, env.capture = time.time() - age, tenant
    b.store.commit(sp, env)
    return sp.queue_id


def ids(result) -> list[str]:
    return [e["id"] for e in result["entries"]]


def test_committed_in_capture_never_due_and_untouched_by_queue_actions(backend):
    b = backend
    qid = capture(b, "team-a", "hello")
    assert b.store.entry(qid).state == QueueState.CAPTURE
    assert b.store.due(time.time() + 10**6, 100) == []
    c = ControlClient(b.config.control_socket)
    for op in ("hold", "release", "delete", "requeue"):
        assert c.call(op, all=True)["done"] == []
    assert c.call("bounce", ids=[qid])["skipped"] == [qid]
    assert b.store.entry(qid).state == QueueState.CAPTURE


def test_list_search_page_and_tenants(backend):
    b = backend
    a1 = capture(b, "team-a", "Password reset", age=30)
    a2 = capture(b, "team-a", "Welcome", rcpt="eve@dev.example", age=20)
    c1 = capture(b, "team-c", "Invoice", age=10)
    c = ControlClient(b.config.control_socket)
    assert ids(c.call("capture_list")) == [c1, a2, a1]  # newest first
    assert ids(c.call("capture_list", tenant="team-a")) == [a2, a1]
    assert ids(c.call("capture_list", subject="password")) == [a1]
    assert ids(c.call("capture_list", recipient="EVE@")) == [a2]
    assert ids(c.call("capture_list", q="invoice")) == [c1]
    assert ids(c.call("capture_list", sender="nobody")) == []
    page = c.call("capture_list", limit=1, offset=1)
    assert page["total"] == 3 and ids(page) == [a2]
    row = c.call("capture_list", tenant="team-c")["entries"][0]
    assert row["tenant"] == "team-c" and row["subject"] == "Invoice"
    assert row["recipients"] == ["bob@dev.example"] and row["from"] == "app@example.org"
    with pytest.raises(RemoteError, match="limit"):
        c.call("capture_list", limit="ten")


def test_show_and_raw(backend):
    b = backend
    qid = capture(b, "team-a", "Rich", html=True)
    c = ControlClient(b.config.control_socket)
    view = c.call("capture_show", id=qid)
    assert view["text"].strip() == "plain text of Rich"
    assert view["html"].strip() == "<p>html</p>"
    assert view["attachments"] == [
        {"filename": "a.pdf", "content_type": "application/pdf", "size": 3}
    ]
    assert ["Subject", "Rich"] in view["headers"]
    raw = base64.b64decode(c.call("capture_raw", id=qid)["raw"])
    assert raw == content_bytes(b.store, qid)
    with pytest.raises(RemoteError, match="no such captured message"):
        c.call("capture_show", id=qid, tenant="team-c")  # another tenant's: unknown
    with pytest.raises(RemoteError, match="no such captured message"):
        c.call("capture_raw", id="0000NOTTHERE")


def test_release_hands_the_original_envelope_to_the_queue(backend):
    b = backend
    qid = capture(b, "team-a", "go", age=3 * 86400)
    other = capture(b, "team-c", "stay")
    c = ControlClient(b.config.control_socket)
    refused = c.call("capture_release", ids=[qid], tenant="team-c")
    assert refused["done"] == [] and refused["unknown"] == [qid]
    before = time.time()
    assert c.call("capture_release", ids=[qid, "0000NOTTHERE"])["done"] == [qid]
    entry = b.store.entry(qid)
    assert entry.state == QueueState.INCOMING
    assert entry.envelope.capture == "" and entry.envelope.received_at >= before - 1
    assert [r.address for r in entry.envelope.recipients] == ["bob@dev.example"]
    assert entry.envelope.sender == "app@example.org"
    assert c.call("capture_release", ids=[qid])["unknown"] == [qid]  # not captured any more
    assert [c.detail for c in b.maillog.for_id(qid)] == ["released from capture"]
    assert b.store.entry(other).state == QueueState.CAPTURE


def test_delete_and_the_limits(backend):
    b = backend
    old = capture(b, "team-a", "old", age=10 * 86400)
    big = capture(b, "team-a", "big", age=60)
    new = capture(b, "team-a", "new")
    c = ControlClient(b.config.control_socket)
    assert c.call("capture_delete", ids=[big], tenant="team-c")["unknown"] == [big]
    assert c.call("capture_delete", ids=[big])["done"] == [big]
    assert b.store.entry(big) is None
    removed = b.call(b.manager.capture.sweep(max_size=10**9, max_age=7 * 86400))
    assert removed == [old]
    size = b.store.entry(new).envelope.size
    assert b.call(b.manager.capture.sweep(max_size=size - 1, max_age=7 * 86400)) == [new]
    assert c.call("capture_list")["total"] == 0


@pytest.mark.parametrize("big", [False, True], ids=["in-memory", "spilled"])
def test_a_queue_rebuilt_from_its_files_keeps_captured_mail_captured(tmp_path, big):
    root = tmp_path / "queue"
    store = QueueStore(root, fsync=False)
    store.open()
    draft = Envelope("", "a@example.org", [Recipient("b@dev.example")])
    sp = store.new_spool(draft)  # a spilled spool writes this draft (no capture mark) first
    sp.write(b"Subject: kept\r\n\r\nhi\r\n" + (b"x" * (SPILL_THRESHOLD + 10) if big else b""))
    env = Envelope(sp.queue_id, "a@example.org", [Recipient("b@dev.example")], size=sp.size)
    env.capture = "dev.example"
    store.commit(sp, env)
    store.close()
    for name in ("queue.db", "queue.db-wal", "queue.db-shm"):
        (root / name).unlink(missing_ok=True)
    store = QueueStore(root, fsync=False)
    store.open(owner=True)
    try:
        assert store.recover().rebuilt == [sp.queue_id]
        entry = store.entry(sp.queue_id)
        assert entry.state == QueueState.CAPTURE and entry.envelope.capture == "dev.example"
        assert store.due(time.time() + 10**6, 10) == []
    finally:
        store.close()
