"""New-mail wake-ups (pigeon/mailstore/notify.py) and local delivery announcing them."""

from __future__ import annotations

import os
import threading

from pigeon.delivery import maildir as md
from pigeon.mailstore import notify
from pigeon.testing.fakes import BytesContent


def test_watch_announce_cancel(tmp_path):
    calls: list[str] = []
    box = tmp_path / "box"
    handle = notify.watch(box, lambda: calls.append("a"))
    other = notify.watch(str(box) + "/", lambda: calls.append("b"))  # the same Maildir
    notify.announce(os.path.relpath(box))
    assert sorted(calls) == ["a", "b"]
    notify.announce(tmp_path / "elsewhere")
    assert len(calls) == 2
    handle.cancel()
    handle.cancel()  # idempotent
    notify.announce(box)
    assert calls[2:] == ["b"]
    other.cancel()
    assert notify.watching(box) == 0
    notify.announce(box)
    assert len(calls) == 3


def test_a_failing_callback_does_not_stop_the_others(tmp_path, caplog):
    calls: list[int] = []

    def broken() -> None:
        raise RuntimeError("boom")

    handles = [notify.watch(tmp_path, broken), notify.watch(tmp_path, lambda: calls.append(1))]
    notify.announce(tmp_path)
    assert calls == [1]
    assert "watcher" in caplog.text
    for h in handles:
        h.cancel()


def test_announce_from_many_threads(tmp_path):
    count = 0
    lock = threading.Lock()

    def bump() -> None:
        nonlocal count
        with lock:
            count += 1

    handle = notify.watch(tmp_path, bump)
    threads = [
        threading.Thread(target=lambda: [notify.announce(tmp_path) for _ in range(100)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    handle.cancel()
    assert count == 400


def test_local_delivery_announces_after_the_rename_into_new(tmp_path):
    box = tmp_path / "alice"
    junk = box / ".Junk"
    seen: list[list[str]] = []
    handle = notify.watch(box, lambda: seen.append(os.listdir(box / "new")))
    junk_handle = notify.watch(junk, lambda: seen.append(["junk"]))
    src = BytesContent(b"Subject: x\r\n\r\nbody\r\n")
    results = md.deliver_batch(
        [md.MaildirJob(box, src, "s@example.test"), md.MaildirJob(box, src, "")]
    )
    assert all(err is None for _, _, err in results)
    # once per Maildir per batch, and the files were already in new/
    assert len(seen) == 1 and len(seen[0]) == 2
    md.deliver_batch([md.MaildirJob(junk, src, "")])
    assert seen[1:] == [["junk"]]
    handle.cancel()
    junk_handle.cancel()
