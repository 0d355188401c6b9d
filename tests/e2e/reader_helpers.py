"""Shared set-up for the mail-reader client tests: a server under test with alice's mailbox.

The same client scenarios run against pigeon and against a private Dovecot
(pigeon.testing.dovecot), the reference: a scenario that fails on Dovecot
is a wrong test, one that fails on pigeon alone is a pigeon bug.

  * pigeon: a live server (PigeonProcess) with the test CA's certificate for
    "localhost", alice's account, mail delivered over SMTP to its smtp
    listener (local delivery into the Maildir).
  * Dovecot: the same account in a passwd-file, mail "delivered" by writing
    the file into new/ as a delivery agent does (tmp/, then rename).

Both directories are made with tempfile.mkdtemp() (searchable by Dovecot's
mail user, which tmp_path's parents are not) and removed afterwards.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import re
import smtplib
import ssl
import tempfile
from pathlib import Path

import pytest
from secure_helpers import CONFIG, PASSWORD, USER, add_user, message

from pigeon.testing.dovecot import DovecotUnavailable, PrivateDovecot
from pigeon.testing.live import PigeonProcess, require_tool, wait_for
from pigeon.testing.mailclients import Account
from pigeon.testing.testca import TestCa

HOST = "localhost"  # the name in the test certificate; 127.0.0.1 in /etc/hosts
SENDER = "sender@elsewhere.example"


class ReaderServer:
    """What a client test needs of a server: addresses, an account, delivery."""

    name = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ca = TestCa(workdir / "ca")
        self.cert, self.key = self.ca.issue(HOST)
        self.imap_port = self.imaps_port = self.pop3_port = self.pop3s_port = 0
        self.inbox = Path()
        self.sent = 0

    def imap(self, tls: str = "implicit") -> Account:
        port = self.imaps_port if tls == "implicit" else self.imap_port
        return Account(HOST, port, USER, PASSWORD, self.ca.ca_file, tls)

    def pop3(self, tls: str = "implicit") -> Account:
        port = self.pop3s_port if tls == "implicit" else self.pop3_port
        return Account(HOST, port, USER, PASSWORD, self.ca.ca_file, tls)

    def deliver(self, subject: str) -> None:
        raise NotImplementedError

    def stored(self) -> int:
        """Messages in alice's INBOX Maildir now (new/ and cur/). By unique name:
        a reader may move a file from new/ to cur/ between the two listings."""
        bases = set()
        for sub in ("new", "cur"):
            if (self.inbox / sub).is_dir():
                bases.update(name.partition(":")[0] for name in os.listdir(self.inbox / sub))
        return len(bases)

    def deliver_all(self, *subjects: str) -> None:
        """Deliver each, and wait (bounded) until all are in the Maildir."""
        before = self.stored()
        for subject in subjects:
            self.deliver(subject)
        want = before + len(subjects)
        assert wait_for(lambda: self.stored() >= want, timeout=30), (
            f"{self.name}: {want - self.stored()} message(s) never reached {self.inbox}"
        )

    def stop(self) -> None:
        raise NotImplementedError


class PigeonReaders(ReaderServer):
    name = "pigeon"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.proc = PigeonProcess(
            workdir / "pigeon",
            CONFIG + f'[tls]\ncert_file = "{self.cert}"\nkey_file = "{self.key}"\n',
        )
        self.proc.start()
        try:
            add_user(self.proc)
        except BaseException:
            self.proc.stop()  # nobody else holds it yet: it must not outlive the test
            raise
        self.imap_port, self.imaps_port = self.proc.imap_port, self.proc.imaps_port
        self.pop3_port, self.pop3s_port = self.proc.pop3_port, self.proc.pop3s_port
        self.mail_root = self.proc.data_dir / "mailboxes"
        self.inbox = self.mail_root / "example.test" / "alice"

    def deliver(self, subject: str) -> None:
        with smtplib.SMTP(self.proc.host, self.proc.port, timeout=30) as s:
            s.sendmail(SENDER, [USER], message(SENDER, USER, subject))

    def stop(self) -> None:
        self.proc.stop()


class DovecotReaders(ReaderServer):
    name = "dovecot"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.mail_root = workdir / "mail"
        self.inbox = self.mail_root / "example.test" / "alice"
        for sub in ("cur", "new", "tmp"):
            (self.inbox / sub).mkdir(parents=True)
        self.server = PrivateDovecot(
            workdir,
            self.mail_root,
            {USER: PASSWORD},
            cert_file=self.cert,
            key_file=self.key,
            pop3=True,
        )
        try:
            self.server.start()
        except DovecotUnavailable as exc:
            if os.environ.get("CI") == "true":
                pytest.fail(f"Dovecot is required in CI: {exc}")
            pytest.skip(str(exc))
        self.imap_port, self.imaps_port = self.server.imap_port, self.server.imaps_port
        self.pop3_port, self.pop3s_port = self.server.pop3_port, self.server.pop3s_port
        self.owner = pwd.getpwnam(self.server.mail_user)

    def deliver(self, subject: str) -> None:
        # As a delivery agent: written in tmp/, renamed into new/ (unique name).
        self.sent += 1
        name = f"{self.sent}.M{os.getpid()}.readers-test"
        tmp = self.inbox / "tmp" / name
        tmp.write_bytes(message(SENDER, USER, subject).replace(b"\r\n", b"\n"))
        os.chown(tmp, self.owner.pw_uid, self.owner.pw_gid)
        os.rename(tmp, self.inbox / "new" / name)

    def stop(self) -> None:
        self.server.stop()


def make_open_tmp() -> Path:
    """A directory Dovecot's mail user may search (0755); the caller removes it."""
    path = Path(tempfile.mkdtemp(prefix="pigeon-readers-"))
    path.chmod(0o755)
    return path


def start_readers(kind: str, workdir: Path) -> ReaderServer:
    """The server under test: "pigeon", or "dovecot" (the reference)."""
    if kind == "dovecot":
        require_tool("dovecot")
        return DovecotReaders(workdir)
    return PigeonReaders(workdir)


# ---------------------------------------------------------------------- checks with imaplib


def imap_login(account: Account) -> imaplib.IMAP4_SSL:
    ctx = ssl.create_default_context(cafile=str(account.ca_file))
    client = imaplib.IMAP4_SSL(account.host, account.port, ssl_context=ctx, timeout=30)
    client.login(account.user, account.password)
    return client


_UID = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")


def imap_state(account: Account, folder: str = "INBOX") -> dict[str, set[str]]:
    """Subject -> flags of every message in `folder`, read with imaplib (EXAMINE:
    nothing changes). \\Recent is left out (it depends on who looked first)."""
    client = imap_login(account)
    try:
        typ, _ = client.select(folder, readonly=True)
        assert typ == "OK", f"EXAMINE {folder}: {typ}"
        flags: dict[int, set[str]] = {}
        subjects: dict[int, str] = {}
        typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
        for item in data:
            if isinstance(item, bytes) and (uid := _UID.search(item)):
                found = _FLAGS.search(item)
                words = found.group(1).decode().split() if found else []
                flags[int(uid.group(1))] = {w for w in words if w != "\\Recent"}
        typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        for item in data:
            if isinstance(item, tuple) and (uid := _UID.search(item[0])):
                text = item[1].decode(errors="replace").strip()
                subjects[int(uid.group(1))] = text.partition(":")[2].strip()
        return {subjects[uid]: flags.get(uid, set()) for uid in subjects}
    finally:
        client.logout()


def imap_change(account: Account, subject: str, command: str, flags: str, expunge=False) -> None:
    """STORE `command` (+FLAGS/-FLAGS) `flags` on the message with `subject`,
    then EXPUNGE when asked: another client's doing, seen by the one under test."""
    client = imap_login(account)
    try:
        client.select("INBOX")
        typ, data = client.uid("SEARCH", "HEADER", "Subject", f'"{subject}"')
        uids = data[0].split()
        assert typ == "OK" and len(uids) == 1, f"{subject!r}: {typ} {data}"
        typ, data = client.uid("STORE", uids[0].decode(), command, flags)
        assert typ == "OK", data
        if expunge:
            typ, data = client.expunge()
            assert typ == "OK", data
    finally:
        client.logout()


def subjects_of(messages) -> dict[str, str]:
    """Subject -> Maildir flags of a client's local copy."""
    out = {}
    for m in messages:
        found = re.search(rb"^Subject: (.*?)\r?$", m.data, re.M)
        out[found.group(1).decode() if found else "?"] = m.flags
    return out


def pop_subjects(messages: list[bytes]) -> list[str]:
    """The subjects of messages a POP3 client fetched, sorted."""
    out = []
    for data in messages:
        found = re.search(rb"^Subject: (.*?)\r?$", data, re.M)
        out.append(found.group(1).decode() if found else "?")
    return sorted(out)
