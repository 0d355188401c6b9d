"""IMAP with real clients (issue 14, item 4): mbsync, offlineimap, neomutt, concurrent sessions.

Each scenario runs against pigeon and against a private Dovecot, the
reference (reader_helpers.readers): the clients are Debian's, configured as
docs/imap.md tells users (pigeon.testing.mailclients), over IMAPS or
STARTTLS with the test CA's certificate verified. What one client or
session changes is checked with another (imaplib, or the other client).
"""

from __future__ import annotations

import imaplib
import re
import threading
import time

import pytest
from reader_helpers import (
    HOST,
    PigeonReaders,
    imap_change,
    imap_login,
    imap_state,
    subjects_of,
)
from secure_helpers import PASSWORD, USER

from pigeon.auth.passwords import hash_password
from pigeon.testing.dovecot import DovecotUnavailable, PrivateDovecot
from pigeon.testing.live import require_tool
from pigeon.testing.mailclients import Account, Mbsync, Neomutt, OfflineImap

pytestmark = pytest.mark.e2e


def _set_local_flags(box, subject: str, letters: str) -> None:
    """Change the Maildir flags of the local copy of `subject`, as an MUA does."""
    for m in box.messages():
        if f"Subject: {subject}".encode() in m.data:
            base = m.path.name.partition(":2,")[0]
            target = m.path.parent.parent / "cur" / f"{base}:2,{''.join(sorted(letters))}"
            m.path.rename(target)
            return
    raise AssertionError(f"{subject!r} not in the local copy")


def _delete_local(box, subject: str) -> None:
    for m in box.messages():
        if f"Subject: {subject}".encode() in m.data:
            m.path.unlink()
            return
    raise AssertionError(f"{subject!r} not in the local copy")


def _sync_both_ways(readers, box) -> None:
    """The scenario mbsync and offlineimap share: flags and deletions travel
    from the local copy to the server and from the server to the local copy."""
    readers.deliver_all("one", "two", "three")
    box.sync()
    assert set(subjects_of(box.messages())) == {"one", "two", "three"}

    # Near side -> server: "one" flagged and read, "two" deleted.
    _set_local_flags(box, "one", "FS")
    _delete_local(box, "two")
    box.sync()
    state = imap_state(readers.imap())
    assert set(state) == {"one", "three"}, state
    assert {"\\Flagged", "\\Seen"} <= state["one"], state
    assert "\\Flagged" not in state["three"], state

    # Server (another client) -> near side: "three" answered, "one" expunged.
    imap_change(readers.imap(), "three", "+FLAGS", "(\\Answered)")
    imap_change(readers.imap(), "one", "+FLAGS", "(\\Deleted)", expunge=True)
    box.sync()
    local = subjects_of(box.messages())
    assert set(local) == {"three"}, local
    assert "R" in local["three"], local

    # A second run changes nothing: the state is stable across sessions.
    box.sync()
    assert subjects_of(box.messages()) == local
    assert set(imap_state(readers.imap())) == {"three"}


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_mbsync_synchronises_both_ways(readers, tls):
    require_tool("mbsync")
    _sync_both_ways(readers, Mbsync(readers.workdir / f"mbsync-{tls}", readers.imap(tls)))


def test_offlineimap_synchronises_both_ways(readers):
    require_tool("offlineimap")
    _sync_both_ways(readers, OfflineImap(readers.workdir / "offlineimap", readers.imap()))


def test_mbsync_and_offlineimap_see_each_others_changes(readers):
    """Two sync clients on one mailbox: a flag set through one appears in the
    other; a message deleted through one disappears from the other."""
    require_tool("mbsync")
    require_tool("offlineimap")
    mbsync = Mbsync(readers.workdir / "mbsync", readers.imap())
    # Implicit TLS: offlineimap's STARTTLS (imaplib2 3.05) hangs or fails now
    # and then against Dovecot too; STARTTLS is mbsync's and neomutt's here.
    offline = OfflineImap(readers.workdir / "offlineimap", readers.imap())
    readers.deliver_all("alpha", "beta", "gamma")
    mbsync.sync()
    offline.sync()
    assert set(subjects_of(offline.messages())) == {"alpha", "beta", "gamma"}

    _set_local_flags(mbsync, "alpha", "F")
    _delete_local(mbsync, "beta")
    mbsync.sync()
    offline.sync()
    seen = subjects_of(offline.messages())
    assert set(seen) == {"alpha", "gamma"}, seen
    assert "F" in seen["alpha"], seen

    _set_local_flags(offline, "gamma", "RS")
    _delete_local(offline, "alpha")
    offline.sync()
    mbsync.sync()
    seen = subjects_of(mbsync.messages())
    assert set(seen) == {"gamma"}, seen
    assert {"R", "S"} <= set(seen["gamma"]), seen


def test_neomutt_lists_reads_and_deletes(readers):
    require_tool("neomutt")
    readers.deliver_all("first note", "second note")
    mutt = Neomutt(readers.workdir / "neomutt", readers.imap())
    index = mutt.index()
    assert [line.subject for line in index] == ["first note", "second note"], index
    assert all("N" in line.flags for line in index), index  # both unread

    text = mutt.read(2)
    assert b"Subject: second note" in text and b"Hello." in text, text
    state = imap_state(readers.imap())
    assert "\\Seen" in state["second note"], state  # reading it marked it, on the server
    assert "\\Seen" not in state["first note"], state

    mutt.delete(1)
    assert set(imap_state(readers.imap())) == {"second note"}
    index = mutt.index()  # a new session: the deletion and the \Seen persist
    assert [(line.subject, "N" in line.flags) for line in index] == [("second note", False)]


# ---------------------------------------------------------------------- concurrency

SESSIONS = 4
MESSAGES = 30
_FETCHED = re.compile(rb"UID (\d+)")


def _watch(account, number: int, seen: list, errors: list, stop: threading.Event) -> None:
    """One session: poll (NOOP + UID FETCH of what is new) until every message
    is seen or `stop`; flag the messages whose number is this session's."""
    try:
        client = imap_login(account)
        client.select("INBOX")
        last = 0
        deadline = time.monotonic() + 90
        while len(seen) < MESSAGES and time.monotonic() < deadline and not stop.is_set():
            client.noop()
            typ, data = client.uid(
                "FETCH", f"{last + 1}:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
            )
            assert typ == "OK", data
            for item in data:
                if not isinstance(item, tuple):
                    continue
                uid = int(_FETCHED.search(item[0]).group(1))
                if uid <= last:  # "n:*" always includes the highest UID (RFC 9051 §6.4.8)
                    continue
                subject = item[1].decode().partition(":")[2].strip()
                seen.append((uid, subject))
                last = uid
                if int(subject.split()[-1]) % SESSIONS == number:
                    typ, _ = client.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Flagged)")
                    assert typ == "OK"
            time.sleep(0.05)
        client.logout()
    except (imaplib.IMAP4.error, OSError, AssertionError) as exc:
        errors.append(f"session {number}: {exc!r}")


def test_concurrent_sessions_while_mail_arrives(readers):
    """SESSIONS sessions on one mailbox, each polling and flagging, while
    MESSAGES messages arrive: each session sees every message exactly once,
    under UIDs unique and increasing in arrival order, the same UID for the
    same message in every session; every flag set by any session stays."""
    seen: list[list] = [[] for _ in range(SESSIONS)]
    errors: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_watch, args=(readers.imap(), n, seen[n], errors, stop))
        for n in range(SESSIONS)
    ]
    for t in threads:
        t.start()
    subjects = [f"load {i:02d}" for i in range(MESSAGES)]
    try:
        for subject in subjects:
            readers.deliver_all(subject)  # one at a time: their order is the arrival order
    finally:
        for t in threads:
            t.join(120)
        stop.set()
    assert not errors, errors
    for number, got in enumerate(seen):
        uids = [uid for uid, _ in got]
        # Each message once, in arrival order; UIDs unique and increasing.
        assert [s for _, s in got] == subjects, f"session {number} saw (uid, subject): {got}"
        assert uids == sorted(set(uids)), f"session {number} saw (uid, subject): {got}"
    assert all(got == seen[0] for got in seen), seen
    state = imap_state(readers.imap())
    assert set(state) == set(subjects)
    assert all("\\Flagged" in flags for flags in state.values()), state


# ---------------------------------------------------------------------- Dovecot on pigeon's Maildir


def test_dovecot_reads_what_pigeons_imap_left(open_tmp):
    """Flags (the `:2,` letters, keywords through dovecot-keywords) and
    expunges made with pigeon's IMAP are what Dovecot reads from the same
    Maildir; and Dovecot's changes are what pigeon's IMAP reads afterwards."""
    require_tool("dovecot")
    pigeon = PigeonReaders(open_tmp)
    try:
        pigeon.deliver_all("plain", "flagged", "answered", "labelled", "gone")
        account = pigeon.imap()
        imap_change(account, "flagged", "+FLAGS", "(\\Flagged)")
        imap_change(account, "answered", "+FLAGS", "(\\Answered \\Seen)")
        imap_change(account, "labelled", "+FLAGS", "($Label1 \\Seen)")
        imap_change(account, "gone", "+FLAGS", "(\\Deleted)", expunge=True)
        left = imap_state(account)
    finally:
        pigeon.stop()
    assert left == {
        "plain": set(),
        "flagged": {"\\Flagged"},
        "answered": {"\\Answered", "\\Seen"},
        "labelled": {"$Label1", "\\Seen"},
    }, left

    # Dovecot gets the argon2id hash pigeon's account store makes, as the
    # benchmark does (bench/imap_vs_dovecot.py): it must log in with it.
    dovecot = PrivateDovecot(
        open_tmp / "dovecot",
        pigeon.mail_root,
        {USER: "{ARGON2ID}" + hash_password(PASSWORD)},
        cert_file=pigeon.cert,
        key_file=pigeon.key,
    )
    try:
        dovecot.start()
    except DovecotUnavailable as exc:
        pytest.fail(f"Dovecot did not start: {exc}")
    try:
        on_dovecot = Account(HOST, dovecot.imaps_port, USER, PASSWORD, pigeon.ca.ca_file)
        assert imap_state(on_dovecot) == left
        # Dovecot's turn: what it changes, pigeon must read.
        imap_change(on_dovecot, "plain", "+FLAGS", "(\\Flagged)")
        imap_change(on_dovecot, "flagged", "+FLAGS", "(\\Deleted)", expunge=True)
        changed = imap_state(on_dovecot)
    finally:
        dovecot.stop()

    pigeon.proc.start()
    try:
        assert imap_state(pigeon.imap()) == changed
        assert set(changed) == {"plain", "answered", "labelled"}
    finally:
        pigeon.stop()
