"""Issue 14, "Done when", tried as a new user would, in one test.

Mail sent to alice@example.test (SMTP, swaks) is read with POP3 (fetchmail)
and IMAP (mbsync and neomutt); flags and deletions persist across sessions,
clients and a restart of pigeon; IDLE announces a new message within a
second of its delivery; Dovecot reads what pigeon's IMAP left.

The one timed assertion of the suite is here on purpose: "within a second"
is the issue's explicit requirement. It is measured conservatively (from
the 250 after DATA, which comes before the delivery into the Maildir, to
the "* n EXISTS" line), and the wait before failing for a missing
announcement is a generous 30 s.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import subprocess
import time

import pytest
from reader_helpers import HOST, imap_login, imap_state, pop_subjects, subjects_of
from secure_helpers import CONFIG, PASSWORD, USER, message

from pigeon.testing.dovecot import DovecotUnavailable, PrivateDovecot
from pigeon.testing.live import PigeonProcess, require_tool, wait_for
from pigeon.testing.mailclients import Account, Fetchmail, Mbsync, Neomutt
from pigeon.testing.testca import TestCa

pytestmark = pytest.mark.e2e

#: The issue's bound: IDLE announces a new message within a second of its delivery.
IDLE_BOUND = 1.0


def _swaks(server: PigeonProcess, subject: str) -> None:
    done = subprocess.run(
        [
            require_tool("swaks"),
            "--server",
            f"127.0.0.1:{server.port}",
            "--from",
            "friend@elsewhere.example",
            "--to",
            USER,
            "--helo",
            "friend.example",
            "--header",
            f"Subject: {subject}",
            "--body",
            f"This is {subject}.",
            "--timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _stored(server: PigeonProcess) -> int:
    inbox = server.data_dir / "mailboxes" / "example.test" / "alice"
    return sum(len(list((inbox / d).iterdir())) for d in ("new", "cur") if (inbox / d).is_dir())


def _line(stream, deadline: float) -> bytes:
    line = stream.readline()
    if not line or time.monotonic() > deadline:
        raise AssertionError(f"no answer from the IMAP server (last: {line!r})")
    return line


def _idle_delay(server: PigeonProcess, account: Account) -> float:
    """Seconds from the 250 after DATA of a new message to the "* n EXISTS"
    an IDLE session receives (RFC 2177)."""
    ctx = ssl.create_default_context(cafile=str(account.ca_file))
    raw = socket.create_connection((account.host, account.port), timeout=30)
    with ctx.wrap_socket(raw, server_hostname=account.host) as sock:
        stream = sock.makefile("rb")
        deadline = time.monotonic() + 60
        _line(stream, deadline)
        for tag, command in ((b"a", f'LOGIN "{USER}" "{PASSWORD}"'), (b"b", "SELECT INBOX")):
            sock.sendall(tag + b" " + command.encode() + b"\r\n")
            while not (line := _line(stream, deadline)).startswith(tag + b" "):
                pass
            assert line.startswith(tag + b" OK"), line
        sock.sendall(b"c IDLE\r\n")
        while not _line(stream, deadline).startswith(b"+"):
            pass
        with smtplib.SMTP(server.host, server.port, timeout=30) as smtp:
            smtp.sendmail(
                "friend@elsewhere.example",
                [USER],
                message("friend@elsewhere.example", USER, "ping"),
            )
            accepted = time.monotonic()  # sendmail returns after the 250 to DATA
        while not re.match(rb"\* \d+ EXISTS", _line(stream, accepted + 30)):
            pass
        announced = time.monotonic()
        sock.sendall(b"DONE\r\n")
        while not (line := _line(stream, deadline + 30)).startswith(b"c "):
            pass
        assert line.startswith(b"c OK"), line
        sock.sendall(b"d LOGOUT\r\n")
    return announced - accepted


def _uids(account: Account) -> tuple[int, list[int]]:
    client = imap_login(account)
    try:
        client.select("INBOX", readonly=True)
        validity = int(client.untagged_responses["UIDVALIDITY"][0])
        typ, data = client.uid("SEARCH", "ALL")
        return validity, [int(u) for u in data[0].split()]
    finally:
        client.logout()


def test_alice_reads_her_mail_with_pop3_imap_idle_and_dovecot(open_tmp):
    for tool in ("swaks", "fetchmail", "mbsync", "neomutt", "dovecot"):
        require_tool(tool)
    ca = TestCa(open_tmp / "ca")
    cert, key = ca.issue(HOST)
    server = PigeonProcess(
        open_tmp / "pigeon", CONFIG + f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
    )
    server.start()
    try:
        # A new user: the account from the command line, the password on stdin.
        made = server.command("user", "add", USER, "--password-stdin", stdin=PASSWORD.encode())
        assert made.returncode == 0, made.stderr
        imaps = Account(HOST, server.imaps_port, USER, PASSWORD, ca.ca_file)
        imap_starttls = Account(HOST, server.imap_port, USER, PASSWORD, ca.ca_file, "starttls")
        pop3 = Account(HOST, server.pop3_port, USER, PASSWORD, ca.ca_file, "starttls")

        _swaks(server, "first letter")
        _swaks(server, "second letter")
        assert wait_for(lambda: _stored(server) == 2, timeout=30), "swaks' mail not delivered"

        # POP3: fetchmail reads both and leaves them.
        popped = Fetchmail(open_tmp / "fetchmail", pop3).fetch(keep=True)
        assert sorted(pop_subjects(popped)) == ["first letter", "second letter"]

        # IMAP: mbsync copies both; "first letter" flagged on the local copy.
        mbsync = Mbsync(open_tmp / "mbsync", imaps)
        mbsync.sync()
        assert set(subjects_of(mbsync.messages())) == {"first letter", "second letter"}
        for m in mbsync.messages():
            if b"Subject: first letter" in m.data:
                m.path.rename(m.path.parent.parent / "cur" / f"{m.path.name.split(':2,')[0]}:2,F")
        mbsync.sync()

        # neomutt (STARTTLS) lists both, sees the flag, reads the second.
        mutt = Neomutt(open_tmp / "neomutt", imap_starttls)
        index = {line.subject: line.flags for line in mutt.index()}
        assert set(index) == {"first letter", "second letter"}, index
        assert "!" in index["first letter"] and "N" in index["second letter"], index
        assert b"This is second letter." in mutt.read(2)

        # Persisted across sessions and clients, and across a restart of pigeon.
        expected = {"first letter": {"\\Flagged"}, "second letter": {"\\Seen"}}
        assert imap_state(imaps) == expected
        mbsync.sync()
        assert subjects_of(mbsync.messages()) == {"first letter": "F", "second letter": "S"}
        before = _uids(imaps)
        server.stop()
        server.start()
        assert imap_state(imaps) == expected
        assert _uids(imaps) == before  # UIDVALIDITY and UIDs survive the restart

        # A deletion in neomutt is gone for mbsync and for POP3.
        mutt.delete(1)
        mbsync.sync()
        assert set(subjects_of(mbsync.messages())) == {"second letter"}
        popped = Fetchmail(open_tmp / "fetchmail", pop3).fetch(keep=True)
        assert pop_subjects(popped) == ["second letter"]

        # IDLE: a new message is announced within a second of its delivery.
        delay = _idle_delay(server, imaps)
        print(f"IDLE: the 250 after DATA to '* n EXISTS' in {delay * 1000:.1f} ms")
        assert delay < IDLE_BOUND, f"IDLE announced the new message after {delay:.3f} s"
        left = imap_state(imaps)
        assert left == {"second letter": {"\\Seen"}, "ping": set()}, left
    finally:
        server.stop()

    # Dovecot reads what pigeon's IMAP left in the Maildir.
    dovecot = PrivateDovecot(
        open_tmp / "dovecot",
        server.data_dir / "mailboxes",
        {USER: PASSWORD},
        cert_file=cert,
        key_file=key,
    )
    try:
        dovecot.start()
    except DovecotUnavailable as exc:
        pytest.fail(f"Dovecot did not start: {exc}")
    try:
        assert imap_state(Account(HOST, dovecot.imaps_port, USER, PASSWORD, ca.ca_file)) == left
    finally:
        dovecot.stop()
