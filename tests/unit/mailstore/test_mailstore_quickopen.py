"""`UserMail.open_unchanged` and `Folder.up_to_date` (a SELECT, and the sync after a command,
without a refresh) and the counters SELECT reads: refused whenever the disk may hold
something new."""

from __future__ import annotations

import os

from pigeon.mailstore import state as state_module


def test_quick_open_only_when_nothing_on_disk_is_new(user, deliver, monkeypatch):
    monkeypatch.setattr(state_module, "MTIME_SLACK", 0.0)  # no re-check of a recent cur/
    assert user.open_unchanged("INBOX") is None  # not in memory yet
    for n in range(3):
        deliver(user.maildir, b"Subject: %d\n\nx\n" % n)
    folder = user.open("INBOX")
    assert folder.first_unseen() == 1
    folder.set_flags([folder.messages[0].uid], ["\\Seen"], "add")
    folder.close()
    quick = user.open_unchanged("INBOX")
    assert quick is not None and len(quick.messages) == 3 and quick.first_unseen() == 2
    assert quick.up_to_date()
    quick.set_flags([quick.messages[1].uid], ["\\Flagged"], "add")
    assert not quick.up_to_date()  # its own change: a view of its own until its sync
    quick.sync()
    assert quick.up_to_date()
    quick.close()

    watching = user.open("INBOX")
    deliver(user.maildir, b"Subject: new\n\nx\n")  # in new/: a refresh is needed
    assert user.open_unchanged("INBOX") is None and not watching.up_to_date()
    assert watching.sync().added and watching.up_to_date()
    watching.close()
    folder = user.open("INBOX")
    assert len(folder.messages) == 4
    folder.close()

    cur = os.path.join(user.maildir, "cur")
    name = sorted(os.listdir(cur))[-1]
    os.rename(os.path.join(cur, name), os.path.join(cur, name + "S"))  # another program
    os.utime(cur, ns=(0, 0))  # its mtime moved (whatever the clock's granularity)
    assert user.open_unchanged("INBOX") is None
    folder = user.open("INBOX")
    assert "\\Seen" in folder.messages[-1].flags and folder.first_unseen() == 2
    folder.close()
