"""Dovecot reads the Maildir the mailbox API wrote, and the API reads Dovecot's changes.

A private Dovecot (dovecot-imapd, started by the test with its own
configuration, on an ephemeral loopback port, `LAYOUT=maildir++:UTF-8`) is
pointed at a copy of a Maildir pigeon's mailbox API changed: flags, keywords
(through dovecot-keywords), folders, a UTF-8 folder name, subscriptions. It is
asked over IMAP (Python's imaplib). Then Dovecot changes flags and expunges,
and the API's sync() must see it.
"""

from __future__ import annotations

import imaplib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pigeon.mailstore.mailbox import MailStore, UserMail
from pigeon.mailstore.names import sized_name, unique_base
from pigeon.mailstore.state import forget_state
from pigeon.testing.live import free_port, require_tool, wait_for

MAIL_UID = 8  # Debian's "mail" user: Dovecot refuses to access mail as root

CONFIG = """\
base_dir = {top}/run
state_dir = {top}/state
log_path = {top}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{top}/mail/%u:LAYOUT=maildir++:UTF-8
mail_uid = {uid}
mail_gid = {uid}
first_valid_uid = {uid}
first_valid_gid = {uid}
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = static
  args = password=secret
}}
userdb {{
  driver = static
  args = uid={uid} gid={uid} home={top}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


def _deliver(maildir: str, subject: str) -> None:
    body = f"From: a@example.test\nSubject: {subject}\n\nhello\n".encode()
    name = sized_name(unique_base(), len(body), len(body) + body.count(b"\n"))
    with open(os.path.join(maildir, "tmp", name), "wb") as f:
        f.write(body)
    os.rename(os.path.join(maildir, "tmp", name), os.path.join(maildir, "new", name))


@pytest.fixture
def dovecot_top() -> Iterator[Path]:
    require_tool("dovecot")
    if os.geteuid() != 0:
        pytest.skip("starting a private Dovecot needs root (it switches to the mail user)")
    top = Path(tempfile.mkdtemp(prefix="pigeon-dovecot-"))
    os.chmod(top, 0o755)  # the mail user walks through it
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def dovecot(dovecot_top: Path) -> Iterator[int]:
    """A private Dovecot on a loopback port serving {top}/mail/alice; the port."""
    top = dovecot_top
    port = free_port()
    for sub in ("run", "state", "mail", "home"):
        (top / sub).mkdir(mode=0o755)
    (top / "dovecot.conf").write_text(CONFIG.format(top=top, uid=MAIL_UID, port=port))
    yield port


def _start(top: Path, port: int) -> subprocess.Popen[bytes]:
    for path in [top / "mail", top / "home", *(top / "mail").rglob("*")]:
        os.chown(path, MAIL_UID, MAIL_UID)
    proc = subprocess.Popen(
        ["dovecot", "-F", "-c", str(top / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def listening() -> bool:
        if proc.poll() is not None:
            return True
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_for(listening, timeout=20)
    if proc.poll() is not None:
        log = (top / "dovecot.log").read_text() if (top / "dovecot.log").exists() else ""
        pytest.fail(f"dovecot did not start: {proc.stderr.read() if proc.stderr else b''!r} {log}")
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


def _fetch_flags(imap: imaplib.IMAP4) -> dict[str, set[str]]:
    """Subject -> flags of every message of the selected mailbox."""
    typ, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    out = {}
    for item in data:
        if isinstance(item, tuple):
            flags = imaplib.ParseFlags(item[0])
            subject = item[1].decode().split(":", 1)[1].strip()
            out[subject] = {f.decode() for f in flags} - {"\\Recent"}  # Dovecot's session flag
    return out


def test_dovecot_sees_what_the_api_wrote_and_the_api_sees_dovecot(dovecot_top, dovecot):
    port = dovecot
    top = dovecot_top
    root = top / "pigeon"
    user: UserMail = MailStore(root).user("alice", "example.test")
    for subject in ("one", "two", "three"):
        _deliver(user.maildir, subject)
    inbox = user.open("INBOX")
    inbox.set_flags([1], ["\\Seen", "\\Flagged"], "add")
    inbox.set_flags([2], ["\\Answered", "$Important", "project-x"], "add")
    inbox.set_flags([3], ["\\Deleted"], "add")
    user.create("Archive/2024")
    user.create("Entwürfe")
    inbox.copy([2], "Archive/2024")
    user.subscribe("Archive/2024")
    inbox.close()
    forget_state(user.maildir)

    # Dovecot reads a copy as its user "alice" (its mail_location)
    shutil.copytree(user.maildir, top / "mail" / "alice")
    proc = _start(top, port)
    try:
        imap = imaplib.IMAP4("127.0.0.1", port, timeout=30)
        imap.login("alice", "secret")
        typ, listing = imap.list()
        assert typ == "OK"
        names = {line.decode().rsplit('"/" ', 1)[1].strip('"') for line in listing}
        assert {"INBOX", "Archive", "Archive/2024", "Sent", "Drafts", "Trash", "Junk"} <= names
        assert "Entw&APw-rfe" in names  # UTF-8 on disk, modified UTF-7 on the wire
        typ, subscribed = imap.lsub()
        assert b"Archive/2024" in b"\n".join(subscribed)
        imap.select("INBOX")
        flags = _fetch_flags(imap)
        assert flags["one"] == {"\\Seen", "\\Flagged"}
        assert flags["two"] == {"\\Answered", "$Important", "project-x"}
        assert flags["three"] == {"\\Deleted"}
        imap.select('"Archive/2024"')
        assert _fetch_flags(imap)["two"] == {"\\Answered", "$Important", "project-x"}
        # Dovecot changes things: the API must see them
        imap.select("INBOX")
        typ, found = imap.search(None, "SUBJECT", "one")
        assert typ == "OK" and len(found[0].split()) == 1
        imap.store(found[0].decode(), "+FLAGS", "(\\Answered NonJunk)")
        imap.expunge()  # "three" was \Deleted by the API
        imap.logout()
    finally:
        _stop(proc)

    copied = UserMail(top / "mail" / "alice")
    forget_state(copied.maildir)
    seen = copied.open("INBOX")
    subjects = {
        m.uid: seen.read(m.uid).split(b"Subject: ")[1].split(b"\r\n")[0] for m in seen.messages
    }
    by_subject = {s.decode(): seen.get(uid).flags for uid, s in subjects.items()}
    assert "three" not in by_subject
    assert by_subject["one"] == {"\\Seen", "\\Flagged", "\\Answered", "NonJunk"}
    assert by_subject["two"] == {"\\Answered", "$Important", "project-x"}
