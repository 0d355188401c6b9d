"""Maildir writing (delivery/maildir.py): headers, line endings, names, streaming, batches."""

from __future__ import annotations

import io
import os
import re
import stat
from pathlib import Path

import pytest

from pigeon.delivery import maildir as md
from pigeon.mailstore import maildir as layout
from pigeon.testing.fakes import BytesContent
from pigeon.vocab import StoreError

CONTENT = b"Received: by mx\r\nSubject: hi\r\n\r\nline one\r\nline two\r\n"


@pytest.fixture
def source():
    return BytesContent(CONTENT)


def deliver_to_maildir(box, content, return_path, *, fsync=True, delivered_to=None):
    """One job through deliver_batch: the new file's path, or its error raised."""
    before = set((box / "new").iterdir()) if (box / "new").is_dir() else set()
    ((_, _, err),) = md.deliver_batch(
        [md.MaildirJob(box, content, return_path, delivered_to)], fsync=fsync
    )
    if err is not None:
        raise err
    (path,) = set((box / "new").iterdir()) - before
    return path


def test_return_path_first_then_delivered_to_then_lf_content(tmp_path, source):
    box = tmp_path / "box"
    path = deliver_to_maildir(box, source, "alice@example.test", delivered_to="bob@example.test")
    data = path.read_bytes()
    assert data == (
        b"Return-Path: <alice@example.test>\nDelivered-To: bob@example.test\n"
        + CONTENT.replace(b"\r\n", b"\n")
    )
    assert b"\r" not in data
    assert path.parent == box / "new"
    assert list((box / "tmp").iterdir()) == []
    for sub in ("tmp", "new", "cur"):
        assert stat.S_IMODE((box / sub).stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_null_sender_is_angle_brackets(tmp_path, source):
    path = deliver_to_maildir(tmp_path / "box", source, "")
    assert path.read_bytes().startswith(b"Return-Path: <>\nReceived: by mx\n")


def test_unique_dovecot_style_names_with_sizes(tmp_path, source):
    names = {
        deliver_to_maildir(tmp_path / "box", source, "a@b", fsync=False).name for _ in range(50)
    }
    assert len(names) == 50
    for name in names:
        m = re.fullmatch(r"(\d+)\.M(\d+)P(\d+)Q(\d+)\.([^/,:]+),S=(\d+),W=(\d+)", name)
        assert m, name
        assert int(m.group(3)) == os.getpid()
        size = (tmp_path / "box" / "new" / name).stat().st_size
        assert int(m.group(6)) == size
        lines = (tmp_path / "box" / "new" / name).read_bytes().count(b"\n")
        assert int(m.group(7)) == size + lines  # virtual size with CRLF


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 5, 64])
def test_crlf_split_across_chunks(chunk):
    # A CRLF straddling a chunk boundary must still become one LF; a lone CR stays.
    src = io.BytesIO(b"abc\r\ndefghi\r\n\r\nj\rk\r\n\r")
    dst = io.BytesIO()
    size, lines = md.copy_crlf_to_lf(src, dst, chunk)
    assert dst.getvalue() == b"abc\ndefghi\n\nj\rk\n\r"
    assert (size, lines) == (len(dst.getvalue()), 4)


def test_large_message_streams(tmp_path):
    src = BytesContent(b"".join(b"x" * 998 + b"\r\n" for _ in range(2000)))
    path = deliver_to_maildir(tmp_path / "box", src, "a@b", fsync=False)
    assert path.stat().st_size == len(b"Return-Path: <a@b>\n") + 2000 * 999


def test_failure_leaves_nothing_in_new(tmp_path):
    with pytest.raises(StoreError):  # content that cannot be read
        deliver_to_maildir(tmp_path / "box", BytesContent(None), "a@b")
    assert list((tmp_path / "box" / "new").iterdir()) == []
    assert list((tmp_path / "box" / "tmp").iterdir()) == []


def test_known_maildir_is_not_looked_at_again(tmp_path, source, monkeypatch):
    box = tmp_path / "box"
    deliver_to_maildir(box, source, "a@b", fsync=False)
    made = []
    monkeypatch.setattr(layout.Path, "mkdir", lambda self, *a, **k: made.append(self))
    deliver_to_maildir(box, source, "a@b", fsync=False)
    assert made == []  # no mkdir of tmp/ new/ cur/ per message
    assert len(list((box / "new").iterdir())) == 2


@pytest.mark.parametrize("gone", ["", "tmp", "new"])
def test_known_maildir_that_vanished_is_created_again(tmp_path, source, gone):
    import shutil

    box = tmp_path / "box"
    deliver_to_maildir(box, source, "a@b")
    shutil.rmtree(box / gone if gone else box)  # an administrator removed it
    if gone == "new":
        # Found gone only when the file is linked: this job fails (the
        # manager defers it) and the Maildir is made again for the retry.
        with pytest.raises(FileNotFoundError):
            deliver_to_maildir(box, source, "a@b")
    path = deliver_to_maildir(box, source, "a@b")
    assert path.parent == box / "new" and path.read_bytes().startswith(b"Return-Path: <a@b>\n")
    for sub in ("tmp", "new", "cur"):
        assert (box / sub).is_dir()
    assert list((box / "tmp").iterdir()) == []


def test_missing_source_with_a_known_maildir_still_fails(tmp_path, source):
    box = tmp_path / "box"
    deliver_to_maildir(box, source, "a@b", fsync=False)
    with pytest.raises(StoreError):
        deliver_to_maildir(box, BytesContent(None), "a@b", fsync=False)
    assert len(list((box / "new").iterdir())) == 1 and list((box / "tmp").iterdir()) == []


def test_deliver_batch_syncs_each_new_directory_once(tmp_path, monkeypatch):
    src = BytesContent(b"Subject: batch\r\n\r\nbody\r\n")
    synced = []
    real = md.fsync_dir
    monkeypatch.setattr(md, "fsync_dir", lambda d: (synced.append(Path(d)), real(d)))
    boxes = [tmp_path / "a", tmp_path / "b"]
    for box in boxes:  # already set up: only new/ syncs count
        layout.ensure_maildir(box)
    synced.clear()
    jobs = [
        md.MaildirJob(boxes[i % 2], src, "s@example.test", f"r{i}@example.test") for i in range(6)
    ]
    results = md.deliver_batch(jobs)
    assert [err for _, _, err in results] == [None] * 6
    assert sorted(synced) == sorted(box / "new" for box in boxes)  # once per Maildir
    assert len(list((boxes[0] / "new").iterdir())) == 3
    assert len(list((boxes[1] / "new").iterdir())) == 3
    assert all(started <= ended for started, ended, _ in results)


def test_deliver_batch_unlinks_and_fails_when_the_directory_sync_fails(tmp_path, monkeypatch):
    src = BytesContent(b"Subject: x\r\n\r\nbody\r\n")
    good, bad = tmp_path / "good", tmp_path / "bad"
    for box in (good, bad):
        layout.ensure_maildir(box)
    real = md.fsync_dir

    def failing(d):
        if Path(d) == bad / "new":
            raise OSError(5, "Input/output error")
        real(d)

    monkeypatch.setattr(md, "fsync_dir", failing)
    results = md.deliver_batch([md.MaildirJob(good, src, ""), md.MaildirJob(bad, src, "")])
    assert results[0][2] is None
    assert isinstance(results[1][2], OSError)
    assert len(list((good / "new").iterdir())) == 1
    assert list((bad / "new").iterdir()) == []  # not left behind as if delivered


def test_deliver_batch_recreates_a_vanished_maildir(tmp_path):
    import shutil

    src = BytesContent(b"Subject: x\r\n\r\nbody\r\n")
    box = tmp_path / "box"
    assert md.deliver_batch([md.MaildirJob(box, src, "")])[0][2] is None
    shutil.rmtree(box)  # remembered, but gone now
    assert md.deliver_batch([md.MaildirJob(box, src, "")])[0][2] is None
    assert len(list((box / "new").iterdir())) == 1
    assert list((box / "tmp").iterdir()) == []


def test_deliver_batch_publishes_only_synced_files(tmp_path, monkeypatch):
    src = BytesContent(b"Subject: x\r\n\r\nbody\r\n")
    box = tmp_path / "box"
    layout.ensure_maildir(box)
    order = []
    real_sync, real_publish = md._fsync_fd, md._publish
    monkeypatch.setattr(md, "_fsync_fd", lambda fd: (order.append("sync"), real_sync(fd)))
    monkeypatch.setattr(md, "_publish", lambda *a: (order.append("publish"), real_publish(*a))[1])
    results = md.deliver_batch([md.MaildirJob(box, src, "") for _ in range(4)])
    assert [err for _, _, err in results] == [None] * 4
    assert order == ["sync"] * 4 + ["publish"] * 4  # every file synced before any appears


def test_a_queue_file_is_written_without_its_preamble(tmp_path):
    """The queue's own content: the Maildir copy starts with our headers, then the message."""
    from pigeon.delivery.content import FileMessage
    from pigeon.msgfile import encode

    queued = tmp_path / "queued"
    queued.write_bytes(encode("0" * 32, b"{}") + CONTENT)
    path = deliver_to_maildir(tmp_path / "box", FileMessage(queued), "a@b", fsync=False)
    assert path.read_bytes() == b"Return-Path: <a@b>\n" + CONTENT.replace(b"\r\n", b"\n")


@pytest.mark.parametrize(
    "err, want",
    [
        (
            OSError(28, "No space left on device"),
            ("4.3.1", "mail system full: No space left on device", True),
        ),
        (
            OSError(122, "Disk quota exceeded"),
            ("4.2.2", "mailbox full: Disk quota exceeded", False),
        ),
        (OSError(5, "Input/output error"), ("4.3.0", "Input/output error", True)),
        (OSError(13, "Permission denied"), ("4.3.0", "Permission denied", False)),
    ],
)
def test_failure_status_never_bounces_and_tells_our_storage_apart(err, want):
    assert md.failure_status(err) == want


def test_unreadable_content_is_a_temporary_failure_with_the_files_reason(tmp_path):
    from pigeon.delivery.content import FileMessage

    try:
        FileMessage(tmp_path / "gone").open()
    except StoreError as exc:
        assert md.failure_status(exc) == ("4.3.0", "No such file or directory", False)
    else:
        raise AssertionError("no StoreError")


@pytest.mark.parametrize("size", [10, md.WHOLE - 100, md.WHOLE + 5000])
def test_small_and_large_copies_are_the_same_lf_file_with_mode_0600(tmp_path, size):
    """Content up to WHOLE is written with one write(), larger content is
    streamed: both give the same bytes (CRLF -> LF), created 0600."""
    line = b"x" * 77 + b"\r\n"
    content = b"Subject: big\r\n\r\n" + line * (size // len(line) + 1)
    path = deliver_to_maildir(tmp_path / "box", BytesContent(content), "a@b", fsync=True)
    assert path.read_bytes() == b"Return-Path: <a@b>\n" + content.replace(b"\r\n", b"\n")
    assert path.stat().st_mode & 0o777 == 0o600
    assert list((tmp_path / "box" / "tmp").iterdir()) == []


def test_a_maildir_plus_plus_folder_is_made_inside_a_whole_maildir(tmp_path, source):
    # The DMARC quarantine's ".Junk" (policy/mailauth): a Maildir inside the
    # user's Maildir, which gets its own tmp/ new/ cur/ too (Maildir++).
    box = tmp_path / "bob"
    path = deliver_to_maildir(box / ".Junk", source, "alice@example.test")
    assert path.parent == box / ".Junk" / "new"
    for sub in ("tmp", "new", "cur"):
        assert (box / sub).is_dir() and (box / ".Junk" / sub).is_dir()
    assert not any((box / "new").iterdir())  # nothing in the inbox
