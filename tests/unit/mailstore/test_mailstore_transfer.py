"""COPY, MOVE and APPEND (pigeon/mailstore/transfer.py) and keywords in file names."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from pigeon.mailstore import transfer
from pigeon.mailstore.errors import FolderError
from pigeon.mailstore.state import forget_state


def cur(maildir: str) -> list[str]:
    return sorted(os.listdir(os.path.join(maildir, "cur")))


def test_copy_gives_new_uids_and_copyuid_data(user, deliver):
    for i in range(3):
        deliver(user.maildir, seconds=1_600_000_000 + i)
    inbox = user.open("INBOX")
    inbox.set_flags([2], ["\\Seen", "todo"], "add")
    trash = user.open("Trash")
    trash.append(b"Subject: already there\r\n\r\n")
    assert trash.sync().added == [1]  # a handle sees its own APPEND at its next sync
    pairs, validity = inbox.copy([3, 2, 99], "Trash")
    assert pairs == [(2, 2), (3, 3)]
    assert validity == trash.uidvalidity
    assert trash.sync().added == [2, 3]
    copied = trash.get(2)
    assert copied.flags == {"\\Seen", "todo"}
    assert copied.internaldate == inbox.get(2).internaldate
    assert trash.read(2) == inbox.read(2)
    # a hard link: no data copied
    assert os.stat(copied.path).st_ino == os.stat(inbox.get(2).path).st_ino
    assert len(inbox.messages) == 3


def test_copy_without_hard_links_copies_the_data(user, deliver, monkeypatch):
    deliver(user.maildir)
    inbox = user.open("INBOX")

    def no_link(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(transfer.os, "link", no_link)
    pairs, _ = inbox.copy([1], "Sent")
    sent = user.open("Sent")
    assert os.stat(sent.get(pairs[0][1]).path).st_ino != os.stat(inbox.get(1).path).st_ino
    assert sent.read(1) == inbox.read(1)
    assert not [n for n in cur(sent.path) if n.endswith(".copying")]


def test_move_expunges_the_source(user, deliver):
    deliver(user.maildir)
    deliver(user.maildir)
    inbox = user.open("INBOX")
    other = user.open("INBOX")
    pairs, validity = inbox.move([1], "Junk")
    junk = user.open("Junk")
    assert pairs == [(1, 1)] and validity == junk.uidvalidity
    assert [m.uid for m in inbox.messages] == [2]
    assert other.sync().expunged == [1]
    assert len(cur(user.maildir)) == 1 and len(cur(junk.path)) == 1


def test_copy_to_missing_folder(user, deliver):
    deliver(user.maildir)
    with pytest.raises(FolderError):
        user.open("INBOX").copy([1], "Nope")


def test_append_with_flags_and_date(user):
    drafts = user.open("Drafts")
    when = dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.UTC)
    validity, uid = drafts.append(
        b"Subject: draft\r\n\r\ntext\r\n", ["\\Draft", "\\Seen", "$Later"], when
    )
    assert (validity, uid) == (drafts.uidvalidity, 1)
    assert drafts.sync().added == [1]
    msg = drafts.get(1)
    assert msg.flags == {"\\Draft", "\\Seen", "$Later"}
    assert msg.internaldate == when
    assert msg.size == len(b"Subject: draft\r\n\r\ntext\r\n")
    assert drafts.read(1) == b"Subject: draft\r\n\r\ntext\r\n"
    (name,) = cur(drafts.path)
    assert name.endswith(":2,DSa") and ",S=21,W=24" in name
    assert os.stat(msg.path).st_mtime == when.timestamp()  # Dovecot's internal date
    assert os.listdir(os.path.join(drafts.path, "tmp")) == []
    assert drafts.append(b"x\r\n")[1] == 2


def test_keywords_use_dovecot_keywords_file(user, deliver):
    deliver(user.maildir)
    deliver(user.maildir)
    inbox = user.open("INBOX")
    inbox.set_flags([1], ["$Junk", "work"], "add")
    inbox.set_flags([2], ["WORK"], "add")  # keywords match case-insensitively
    with open(os.path.join(user.maildir, "dovecot-keywords")) as f:
        assert f.read() == "0 $Junk\n1 work\n"
    names = cur(user.maildir)
    assert names[0].endswith(":2,ab") and names[1].endswith(":2,b")
    assert inbox.get(2).flags == {"work"}
    assert set(inbox.keywords) == {"$Junk", "work"}
    forget_state(user.maildir)  # a restart
    again = user.open("INBOX")
    assert again.get(1).flags == {"$Junk", "work"} and again.get(2).flags == {"work"}


def test_a_keyword_named_later_by_another_program(user, deliver, sync_until):
    name = deliver(user.maildir)
    os.rename(
        os.path.join(user.maildir, "new", name), os.path.join(user.maildir, "cur", name + ":2,Sa")
    )
    inbox = user.open("INBOX")
    assert inbox.get(1).flags == {"\\Seen"}  # "a" has no name yet
    with open(os.path.join(user.maildir, "dovecot-keywords"), "w") as f:
        f.write("0 Later\n")
    changes = sync_until(inbox, lambda c: c.flag_changes)
    assert changes.flag_changes == [1]
    assert inbox.get(1).flags == {"\\Seen", "Later"}


def test_keywords_written_by_another_program_are_read(user, deliver):
    name = deliver(user.maildir)
    with open(os.path.join(user.maildir, "dovecot-keywords"), "w") as f:
        f.write("0 NonJunk\n2 $Forwarded\n")
    os.rename(
        os.path.join(user.maildir, "new", name), os.path.join(user.maildir, "cur", name + ":2,Sac")
    )
    inbox = user.open("INBOX")
    assert inbox.get(1).flags == {"\\Seen", "NonJunk", "$Forwarded"}
    inbox.set_flags([1], ["Fresh"], "add")
    assert inbox.get(1).name.endswith(":2,Sabc")


def test_a_27th_keyword_is_refused(user, deliver):
    deliver(user.maildir)
    inbox = user.open("INBOX")
    inbox.set_flags([1], [f"k{i}" for i in range(26)], "add")
    with pytest.raises(FolderError):
        inbox.set_flags([1], ["one-too-many"], "add")
