"""The mailbox API (pigeon/mailstore/mailbox.py): UIDs, sync, flags, expunge, handles."""

from __future__ import annotations

import logging
import os

import pytest

from pigeon.mailstore.errors import FolderError, MessageGone
from pigeon.mailstore.state import forget_state
from pigeon.mailstore.uidlist import FILENAME


def restart(user):
    """What a new pigeon process sees: no in-memory state for the Maildir."""
    forget_state(user.maildir)


def test_uids_in_arrival_order_and_new_moved_to_cur(user, deliver):
    names = [deliver(user.maildir, seconds=1_700_000_000 + i) for i in (2, 0, 1)]
    inbox = user.open("INBOX")
    assert [m.uid for m in inbox.messages] == [1, 2, 3]
    assert [m.base for m in inbox.messages] == sorted(names)
    assert os.listdir(os.path.join(user.maildir, "new")) == []
    assert sorted(os.listdir(os.path.join(user.maildir, "cur"))) == [
        n + ":2," for n in sorted(names)
    ]
    assert inbox.uidnext == 4
    assert inbox.messages[0].size == len(b"Subject: hi\r\n\r\nhello\r\n")
    assert inbox.messages[0].internaldate.timestamp() == 1_700_000_000


def test_uids_stable_across_restart(user, deliver):
    for _ in range(3):
        deliver(user.maildir)
    first = user.open("inbox")
    before = [(m.uid, m.base) for m in first.messages]
    validity = first.uidvalidity
    first.set_flags([2], ["\\Deleted"], "add")
    first.expunge()
    restart(user)
    deliver(user.maildir)
    again = user.open("INBOX")
    assert again.uidvalidity == validity
    assert [(m.uid, m.base) for m in again.messages][:2] == [before[0], before[2]]
    assert again.messages[-1].uid == 4  # UID 2 is never given again
    assert again.highestmodseq >= first.highestmodseq


def test_read_gives_crlf(user, deliver):
    deliver(user.maildir, b"Subject: a\n\nline one\nline two\n")
    inbox = user.open("INBOX")
    assert inbox.read(1) == b"Subject: a\r\n\r\nline one\r\nline two\r\n"
    with pytest.raises(MessageGone):
        inbox.read(99)


@pytest.mark.parametrize(
    "damage", [b"", b"garbage\n", b"pigeon-uidlist 1 5 2 2\n+x 1 y\n", b"pigeon-uidlist 9 5 2 2\n"]
)
def test_corrupt_uidlist_gets_new_uidvalidity(user, deliver, caplog, damage):
    deliver(user.maildir)
    deliver(user.maildir)
    validity = user.open("INBOX").uidvalidity
    restart(user)
    with open(os.path.join(user.maildir, FILENAME), "wb") as f:
        f.write(damage)
    with caplog.at_level(logging.WARNING, logger="pigeon"):
        inbox = user.open("INBOX")
    assert inbox.uidvalidity > validity
    assert [m.uid for m in inbox.messages] == [1, 2]
    assert "new UIDVALIDITY" in caplog.text


def test_lost_uidlist_gets_new_uidvalidity(user, deliver):
    deliver(user.maildir)
    validity = user.open("INBOX").uidvalidity
    restart(user)
    os.unlink(os.path.join(user.maildir, FILENAME))
    assert user.open("INBOX").uidvalidity > validity


def test_torn_last_line_is_ignored_and_repaired(user, deliver):
    deliver(user.maildir)
    validity = user.open("INBOX").uidvalidity
    restart(user)
    with open(os.path.join(user.maildir, FILENAME), "a") as f:
        f.write("+7 99 half-writ")  # a crash during an append
    deliver(user.maildir)
    inbox = user.open("INBOX")
    assert inbox.uidvalidity == validity
    assert [m.uid for m in inbox.messages] == [1, 2]
    with open(os.path.join(user.maildir, FILENAME)) as f:
        assert f.read().endswith("\n")


def test_flags_round_trip_in_file_names(user, deliver):
    deliver(user.maildir)
    inbox = user.open("INBOX")
    changed, failed = inbox.set_flags(
        [1], ["\\Seen", "\\Flagged", "\\Answered", "\\Draft", "\\Deleted"], "set"
    )
    assert failed == [] and changed[0][0] == 1
    (name,) = os.listdir(os.path.join(user.maildir, "cur"))
    assert name.endswith(":2,DFRST")
    inbox.set_flags([1], ["\\Flagged", "\\Deleted"], "remove")
    (name,) = os.listdir(os.path.join(user.maildir, "cur"))
    assert name.endswith(":2,DRS")
    restart(user)
    assert user.open("INBOX").messages[0].flags == {"\\Seen", "\\Answered", "\\Draft"}


def test_unknown_letters_are_kept(user, deliver):
    name = deliver(user.maildir)
    os.rename(
        os.path.join(user.maildir, "new", name), os.path.join(user.maildir, "cur", name + ":2,PS")
    )
    inbox = user.open("INBOX")
    assert inbox.messages[0].flags == {"\\Seen"}
    inbox.set_flags([1], ["\\Seen"], "remove")
    assert os.listdir(os.path.join(user.maildir, "cur")) == [name + ":2,P"]


def test_unchangedsince(user, deliver):
    deliver(user.maildir)
    deliver(user.maildir)
    inbox = user.open("INBOX")
    stale = inbox.highestmodseq
    inbox.set_flags([1], ["\\Seen"], "add")
    changed, failed = inbox.set_flags([1, 2], ["\\Flagged"], "add", unchangedsince=stale)
    assert failed == [1]
    assert [uid for uid, _, _ in changed] == [2]
    assert changed[0][2] > stale


def test_modseq_rises_with_every_change(user, deliver):
    deliver(user.maildir)
    inbox = user.open("INBOX")
    seen = [inbox.highestmodseq]
    inbox.set_flags([1], ["\\Seen"], "add")
    seen.append(inbox.highestmodseq)
    assert inbox.messages[0].modseq == inbox.highestmodseq
    inbox.set_flags([1], ["\\Deleted"], "add")
    seen.append(inbox.highestmodseq)
    inbox.expunge()
    seen.append(inbox.highestmodseq)
    assert seen == sorted(set(seen))


def test_external_changes_seen_by_sync(user, deliver, sync_until):
    for _ in range(3):
        deliver(user.maildir)
    inbox = user.open("INBOX")
    cur = os.path.join(user.maildir, "cur")
    one, two, _ = (m.name for m in inbox.messages)
    os.rename(os.path.join(cur, one), os.path.join(cur, one + "FS"))  # mutt marks it
    os.unlink(os.path.join(cur, two))  # another reader expunged it
    deliver(user.maildir)  # new mail
    changes = sync_until(inbox, lambda c: c.flag_changes and c.expunged and c.added)
    assert changes.flag_changes == [1]
    assert changes.expunged == [2]
    assert changes.added == [4]
    assert inbox.get(1).flags == {"\\Seen", "\\Flagged"}
    assert [m.uid for m in inbox.messages] == [1, 3, 4]
    assert not inbox.sync()


def test_expunge_only_deleted_and_only_given(user, deliver):
    for _ in range(3):
        deliver(user.maildir)
    inbox = user.open("INBOX")
    inbox.set_flags([1, 2], ["\\Deleted"], "add")
    assert inbox.expunge([2, 3]) == [2]
    assert [m.uid for m in inbox.messages] == [1, 3]
    assert inbox.expunge() == [1]
    assert len(os.listdir(os.path.join(user.maildir, "cur"))) == 1


def test_two_handles_see_each_other_at_sync(user, deliver):
    deliver(user.maildir)
    deliver(user.maildir)
    a = user.open("INBOX")
    b = user.open("INBOX")
    a.set_flags([1], ["\\Seen"], "add")
    a.set_flags([2], ["\\Deleted"], "add")
    a.expunge()
    # b's view stays put until it syncs (sequence numbers must not move)
    assert [m.uid for m in b.messages] == [1, 2]
    assert b.get(1).flags == frozenset()
    changes = b.sync()
    assert changes.expunged == [2] and changes.flag_changes == [1] and changes.added == []
    assert b.get(1).flags == {"\\Seen"}
    # a's own changes are not reported back to it as news
    assert not a.sync()
    deliver(user.maildir)
    assert a.sync().added == [3]
    assert b.sync().added == [3]


def test_open_missing_folder(user):
    with pytest.raises(FolderError):
        user.open("Nope")


def test_remove_whatever_the_flags_for_pop3(user, deliver):
    for _ in range(3):
        deliver(user.maildir)
    inbox = user.open("INBOX")
    other = user.open("INBOX")
    assert inbox.remove([1, 3, 42]) == [1, 3]
    assert [m.uid for m in inbox.messages] == [2]
    assert other.sync().expunged == [1, 3]
    assert len(os.listdir(os.path.join(user.maildir, "cur"))) == 1


def test_a_folder_deleted_under_an_open_handle(user, deliver):
    user.create("Gone")
    box = user.open("Gone")
    user.delete("Gone")
    with pytest.raises(FolderError):
        box.sync()


def test_store_and_expunge_follow_a_rename_by_another_program(user, deliver):
    deliver(user.maildir)
    deliver(user.maildir)
    inbox = user.open("INBOX")
    cur = os.path.join(user.maildir, "cur")
    for info in inbox.messages:  # mutt marks both seen; pigeon has not looked yet
        os.rename(os.path.join(cur, info.name), os.path.join(cur, info.name + "S"))
    changed, _ = inbox.set_flags([1, 2], ["\\Deleted"], "add")
    assert [(uid, flags) for uid, flags, _ in changed] == [
        (1, {"\\Seen", "\\Deleted"}),
        (2, {"\\Seen", "\\Deleted"}),
    ]
    assert sorted(n.rpartition(",")[2] for n in os.listdir(cur)) == ["ST", "ST"]
    os.rename(os.path.join(cur, inbox.get(1).name), os.path.join(cur, inbox.get(1).base + ":2,FST"))
    assert inbox.expunge() == [1, 2]
    assert os.listdir(cur) == []


def test_sessions_in_threads_while_mail_arrives(user, deliver):
    import threading

    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            box = user.open("INBOX")
            for _ in range(200):  # bounded
                box.sync()
                uids = [m.uid for m in box.messages]
                assert uids == sorted(set(uids))
                if uids:
                    box.set_flags(uids[-1:], ["\\Seen"], "add")
                if stop.is_set():
                    break
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(50):
        deliver(user.maildir)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    final = user.open("INBOX")
    assert [m.uid for m in final.messages] == list(range(1, 51))
    restart(user)
    assert [m.uid for m in user.open("INBOX").messages] == list(range(1, 51))


def test_highestmodseq_and_uidnext_are_those_the_handle_has_seen(user, deliver):
    deliver(user.maildir)
    a = user.open("INBOX")
    b = user.open("INBOX")
    before = b.highestmodseq
    a.set_flags([1], ["\\Seen"], "add")
    assert a.highestmodseq > before
    assert b.highestmodseq == before  # b's client has not been told of that change yet
    assert b.uidnext == 2
    deliver(user.maildir)
    a.sync()
    assert a.uidnext == 3 and b.uidnext == 2
    b.sync()
    assert (b.highestmodseq, b.uidnext) == (a.highestmodseq, 3)


def test_state_shared_while_held_then_freed(user, monkeypatch):
    import gc
    import weakref

    from pigeon.mailstore import state

    monkeypatch.setattr(state, "RECENT_STATES", 1)
    a = user.open("INBOX")
    b = user.open("INBOX")
    assert a._state is b._state
    user.open("Sent")  # INBOX is no longer among the recent ones...
    assert user.open("INBOX")._state is a._state  # ...but its handles hold it
    held = weakref.ref(a._state)
    del a, b
    user.open("Sent")
    gc.collect()
    assert held() is None  # memory goes with the last handle
