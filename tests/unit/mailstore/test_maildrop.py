"""A Maildir as a POP3 maildrop (mailstore/maildrop.py) and the mailbox lock (mailstore/lock.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pigeon.mailstore import ensure_maildir
from pigeon.mailstore.lock import LOCK_NAME, try_lock
from pigeon.mailstore.maildrop import open_message, remove, scan, unique_id


@pytest.fixture
def maildir(tmp_path):
    path = tmp_path / "example.test" / "alice"
    ensure_maildir(path)
    return path


def put(maildir, sub: str, name: str, data: bytes) -> None:
    (maildir / sub / name).write_bytes(data)


def test_new_and_cur_oldest_first_with_crlf_sizes_and_stable_uids(maildir):
    put(maildir, "cur", "1700000002.M1P1Q1.host,S=9,W=11:2,S", b"b\n\nbody\n")
    put(maildir, "new", "1700000001.M1P1Q1.host", b"a\n\nx")  # no W=: counted
    put(maildir, "new", ".hidden", b"not a message")
    drop = scan(maildir)
    assert [m.uid for m in drop] == ["1700000001.M1P1Q1.host", "1700000002.M1P1Q1.host,S=9,W=11"]
    assert [m.size for m in drop] == [len(b"a\r\n\r\nx\r\n"), 11]
    # A reader moves the first to cur/ with flags: same uid, still readable.
    os.rename(maildir / "new" / drop[0].name, maildir / "cur" / (drop[0].name + ":2,S"))
    assert [m.uid for m in scan(maildir)] == [m.uid for m in drop]
    with open_message(maildir, drop[0]) as f:
        assert f.read() == b"a\n\nx"


def test_an_empty_or_missing_maildir_is_an_empty_maildrop(tmp_path):
    assert scan(tmp_path / "nowhere") == []


def test_a_uid_outside_rfc_1939_is_hashed_stably():
    long = "1700000000.M1P1Q1." + "h" * 80
    assert unique_id(long) == unique_id(long) and len(unique_id(long)) == 40
    assert unique_id("1.M1P1Q1.ok") == "1.M1P1Q1.ok"


def test_remove_unlinks_what_is_there_and_counts_what_is_gone_as_removed(maildir):
    put(maildir, "new", "1.M1P1Q1.h", b"one\n")
    put(maildir, "new", "2.M1P1Q1.h", b"two\n")
    one, two = scan(maildir)
    os.unlink(maildir / "new" / two.name)  # another reader deleted it
    assert remove(maildir, [one, two]) == 0
    assert scan(maildir) == []
    with pytest.raises(FileNotFoundError):
        open_message(maildir, one)


def test_the_lock_is_exclusive_within_a_process_and_across_processes(maildir):
    first = try_lock(maildir)
    assert first is not None and (maildir / LOCK_NAME).exists()
    assert try_lock(maildir) is None  # a second session of this process
    probe = (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(maildir / LOCK_NAME)!r}, os.O_RDWR)\n"
        "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n"
        "    sys.exit(3)\n"
    )
    assert subprocess.run([sys.executable, "-c", probe], timeout=30).returncode == 3
    first.release()
    first.release()  # idempotent
    assert subprocess.run([sys.executable, "-c", probe], timeout=30).returncode == 0
    with try_lock(maildir) as again:
        assert again is not None and again.held
    assert not again.held


def test_messages_of_one_second_are_ordered_by_their_microseconds(maildir):
    put(maildir, "new", "1700000000.M999P1Q1.h", b"later\n")
    put(maildir, "new", "1700000000.M1000P1Q2.h", b"latest\n")
    put(maildir, "new", "1700000000.M15P1Q3.h", b"first\n")
    assert [m.uid for m in scan(maildir)] == [
        "1700000000.M15P1Q3.h",
        "1700000000.M999P1Q1.h",
        "1700000000.M1000P1Q2.h",
    ]
