"""The IMAP server with Python's imaplib against a live pigeon (docs/imap.md).

Mail arrives by SMTP (smtplib to the smtp listener, local delivery into the
Maildir) and is read with imaplib: IMAP4 + STARTTLS on the "imap" role,
IMAP4_SSL on "imaps". IDLE is spoken by hand (imaplib of Python 3.11 has no
idle()), every wait bounded.
"""

from __future__ import annotations

import base64
import imaplib
import re
import smtplib
import socket
import time

import pytest
from secure_helpers import CONFIG, PASSWORD, USER, add_user, insecure_context, message

from pigeon.testing.live import free_port, wait_for

pytestmark = pytest.mark.e2e

#: A bounded wait for one answer line from the server.
READ_TIMEOUT = 10.0


@pytest.fixture
def server(pigeon_factory):
    proc = pigeon_factory(CONFIG)
    add_user(proc)
    return proc


def deliver(server, subject: str, rcpt: str = USER) -> None:
    """One message to `rcpt` over SMTP (the smtp listener, local delivery)."""
    with smtplib.SMTP(server.host, server.port, timeout=10) as s:
        s.sendmail(
            "sender@elsewhere.example", [rcpt], message("sender@elsewhere.example", rcpt, subject)
        )


def delivered(server, count: int, rcpt: str = USER) -> None:
    """Wait until `count` messages are in the Maildir (new/ or cur/)."""
    local, _, domain = rcpt.partition("@")
    root = server.data_dir / "mailboxes" / domain / local

    def files() -> int:
        return sum(len(list((root / d).iterdir())) for d in ("new", "cur") if (root / d).is_dir())

    assert wait_for(lambda: files() >= count), f"{count} message(s) never reached {root}"


def imaps(server) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", server.imaps_port, ssl_context=insecure_context(), timeout=READ_TIMEOUT
    )
    client.login(USER, PASSWORD)
    return client


def untagged(client: imaplib.IMAP4, name: str) -> list[bytes]:
    return [d for d in client.untagged_responses.get(name, []) if d is not None]


# --- TLS and login -----------------------------------------------------------------


def test_login_is_refused_before_starttls_and_works_after(server):
    client = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=READ_TIMEOUT)
    try:
        caps = client.capabilities
        assert "STARTTLS" in caps and "LOGINDISABLED" in caps, caps
        assert not any(c.startswith("AUTH=") for c in caps), caps
        with pytest.raises(imaplib.IMAP4.error):
            client.login(USER, PASSWORD)
        client.starttls(ssl_context=insecure_context())
        caps = client.capabilities
        assert "LOGINDISABLED" not in caps and "AUTH=PLAIN" in caps, caps
        assert "IMAP4REV2" in caps and "IMAP4REV1" in caps, caps
        typ, _ = client.login(USER, PASSWORD)
        assert typ == "OK"
    finally:
        client.logout()


def test_a_wrong_password_is_no_authenticationfailed(server):
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", server.imaps_port, ssl_context=insecure_context(), timeout=READ_TIMEOUT
    )
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(USER, "not the password")
    client.logout()


def test_failed_imap_logins_count_with_submissions(pigeon_factory):
    """One FailureLimiter for SMTP AUTH and IMAP: the address is locked out for both."""
    server = pigeon_factory(CONFIG + "[auth]\nslow_after = 5\nmax_failures = 3\n")
    add_user(server)
    for _ in range(2):
        c = Raw(server, login=False)
        c.send(f'a LOGIN {USER} "wrong"\r\n'.encode())
        assert b"a NO [AUTHENTICATIONFAILED]" in c.until(rb"^a ")
        c.close()
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=READ_TIMEOUT) as smtp:
        smtp.starttls(context=insecure_context())
        smtp.ehlo("client.example")
        token = base64.b64encode(f"\0{USER}\0wrong".encode()).decode()
        code, text = smtp.docmd("AUTH", "PLAIN " + token)
        assert (code, text[:5]) == (421, b"4.7.0")  # the third failure, over SMTP, locks it
    c = Raw(server, login=False)
    c.send(f'b LOGIN {USER} "{PASSWORD}"\r\n'.encode())  # the right one is not even tried
    seen = c.until(rb"^\* BYE")
    assert b"b NO [AUTHENTICATIONFAILED]" in seen, seen
    assert c.f.readline() == b""  # and the session was closed
    c.close()


def test_authenticate_plain_with_sasl_ir(server):
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", server.imaps_port, ssl_context=insecure_context(), timeout=READ_TIMEOUT
    )
    try:
        assert "SASL-IR" in client.capabilities
        typ, _ = client.authenticate("PLAIN", lambda _: f"\0{USER}\0{PASSWORD}".encode())
        assert typ == "OK"
        assert client.select("INBOX")[0] == "OK"
    finally:
        client.logout()


def test_plaintext_before_starttls_is_dropped(server):
    """CVE-2011-0411: a command sent with STARTTLS, before the handshake, is not run."""
    with socket.create_connection(("127.0.0.1", server.imap_port), timeout=READ_TIMEOUT) as raw:
        f = raw.makefile("rb")
        assert f.readline().startswith(b"* OK")
        raw.sendall(b"a STARTTLS\r\nb LOGIN alice@example.test x\r\n")
        assert f.readline().startswith(b"a OK")
        tls = insecure_context().wrap_socket(raw, server_hostname="pigeon.test")
        tls.sendall(b"c NOOP\r\n")
        tf = tls.makefile("rb")
        line = tf.readline()
        assert line.startswith(b"c OK"), line  # no answer to "b": it was dropped
        tls.close()


# --- reading mail --------------------------------------------------------------------


def test_mail_delivered_by_smtp_appears_in_inbox(server):
    deliver(server, "first message")
    delivered(server, 1)
    client = imaps(server)
    try:
        typ, data = client.select("INBOX")
        assert typ == "OK" and data == [b"1"]
        assert untagged(client, "UIDVALIDITY")
        typ, data = client.fetch("1", "(FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)")
        assert typ == "OK"
        text = data[0] if isinstance(data[0], bytes) else data[0][0]
        assert b"ENVELOPE" in text and b"first message" in text
        assert b"BODYSTRUCTURE" in text and b'"TEXT" "PLAIN"' in text.upper()
        assert b"\\Seen" not in text
        typ, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b"Subject: first message" in data[0][1]
        typ, data = client.fetch("1", "(FLAGS)")
        assert b"\\Seen" not in data[0]  # PEEK does not set \Seen
        typ, data = client.fetch("1", "(BODY[])")
        assert b"Hello." in data[0][1]
        typ, data = client.fetch("1", "(FLAGS)")
        assert b"\\Seen" in data[0]  # BODY[] does (RFC 9051 §6.4.5)
        typ, data = client.fetch("1", "(BODY[TEXT]<0.3>)")
        assert data[0][1] == b"Hel"
    finally:
        client.logout()


def test_examine_is_read_only(server):
    deliver(server, "read only")
    delivered(server, 1)
    client = imaps(server)
    try:
        typ, _ = client.select("INBOX", readonly=True)
        assert typ == "OK"
        client.fetch("1", "(BODY[])")
        typ, data = client.fetch("1", "(FLAGS)")
        assert b"\\Seen" not in data[0]
        typ, _ = client.store("1", "+FLAGS", "\\Flagged")
        assert typ == "NO"
    finally:
        client.logout()


def test_store_search_copy_move_expunge_and_uid_commands(server):
    client = imaps(server)
    try:
        for n in range(3):
            typ, data = client.append(
                "INBOX", None, None, message("a@b.example", USER, f"note {n}")
            )
            assert typ == "OK" and b"APPENDUID" in data[0], data
        client.select("INBOX")
        typ, data = client.uid("SEARCH", None, "ALL")
        uids = [int(u) for u in data[0].split()]
        assert len(uids) == 3 and uids == sorted(uids)
        assert client.store("2", "+FLAGS", "(\\Flagged)")[0] == "OK"
        assert client.search(None, "FLAGGED") == ("OK", [b"2"])
        assert client.search("UTF-8", "SUBJECT", '"note 2"') == ("OK", [b"3"])
        assert client.uid("SEARCH", None, "UNFLAGGED")[1][0].split() == [
            str(uids[0]).encode(),
            str(uids[2]).encode(),
        ]
        assert client.create("Archive")[0] == "OK"
        typ, data = client._simple_command("UID", "COPY", str(uids[0]), "Archive")
        assert typ == "OK" and b"COPYUID" in data[0], data
        typ, data = client._simple_command("UID", "MOVE", str(uids[1]), "Archive")
        assert typ == "OK", data
        assert client.select("INBOX")[1] == [b"2"]
        assert client.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
        typ, data = client.expunge()
        assert typ == "OK" and data == [b"1"]
        assert client.select("Archive")[1] == [b"2"]
        typ, data = client.fetch("1:*", "(UID FLAGS)")
        assert b"\\Flagged" in data[1]  # the moved message kept its flag
        client.uid("STORE", "1:*", "+FLAGS", "(\\Deleted)")
        typ, data = client.uid("SEARCH", None, "DELETED")
        first = data[0].split()[0]
        typ, _ = client._simple_command("UID", "EXPUNGE", first.decode())
        assert typ == "OK"
        assert client.select("Archive")[1] == [b"1"]
        typ, data = client.list()
        names = b"\n".join(data)
        assert b'"Archive"' in names or b" Archive" in names, data
    finally:
        client.logout()


def test_flags_uids_and_uidvalidity_persist_across_sessions_and_a_restart(server):
    deliver(server, "keep me")
    delivered(server, 1)
    client = imaps(server)
    client.select("INBOX")
    validity = untagged(client, "UIDVALIDITY")[0]
    uid = client.fetch("1", "(UID)")[1][0]
    client.store("1", "+FLAGS", "(\\Flagged \\Answered)")
    client.logout()

    client = imaps(server)
    client.select("INBOX")
    flags = client.fetch("1", "(FLAGS)")[1][0]
    assert b"\\Flagged" in flags and b"\\Answered" in flags
    client.logout()

    server.stop()
    server.start()
    client = imaps(server)
    try:
        client.select("INBOX")
        assert untagged(client, "UIDVALIDITY")[0] == validity
        assert client.fetch("1", "(UID)")[1][0] == uid
        flags = client.fetch("1", "(FLAGS)")[1][0]
        assert b"\\Flagged" in flags and b"\\Answered" in flags
    finally:
        client.logout()


# --- IDLE and concurrent sessions ---------------------------------------------------


def _read_until(stream, pattern: bytes, timeout: float) -> bytes:
    """Lines from `stream` until one matches `pattern` (bounded in time)."""
    end = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < end:
        line = stream.readline()
        if not line:
            break
        seen += line
        if re.search(pattern, line):
            return seen
    raise AssertionError(f"{pattern!r} not seen in {seen!r}")


def test_idle_announces_a_message_delivered_by_smtp(pigeon_factory):
    # No slow poll within the wait: only the delivery's announcement can wake the IDLE.
    server = pigeon_factory(CONFIG + "[imap]\nidle_poll = 600\n")
    add_user(server)
    deliver(server, "before idle")
    delivered(server, 1)
    with socket.create_connection(("127.0.0.1", server.imaps_port), timeout=READ_TIMEOUT) as raw:
        tls = insecure_context().wrap_socket(raw, server_hostname="pigeon.test")
        f = tls.makefile("rb")
        assert f.readline().startswith(b"* OK")
        tls.sendall(f'a LOGIN {USER} "{PASSWORD}"\r\n'.encode())
        _read_until(f, rb"^a OK", READ_TIMEOUT)
        tls.sendall(b"b SELECT INBOX\r\n")
        _read_until(f, rb"^b OK", READ_TIMEOUT)
        tls.sendall(b"c IDLE\r\n")
        assert f.readline().startswith(b"+ ")
        deliver(server, "during idle")
        # Bounded wait: the announcement must come (its speed is the bench's matter).
        _read_until(f, rb"^\* 2 EXISTS", READ_TIMEOUT)
        tls.sendall(b"DONE\r\n")
        _read_until(f, rb"^c OK", READ_TIMEOUT)
        tls.sendall(b"d LOGOUT\r\n")
        _read_until(f, rb"^d OK", READ_TIMEOUT)


def test_two_sessions_see_each_others_changes(server):
    deliver(server, "shared one")
    deliver(server, "shared two")
    delivered(server, 2)
    a, b = imaps(server), imaps(server)
    try:
        a.select("INBOX")
        b.select("INBOX")
        a.store("1", "+FLAGS", "(\\Flagged)")
        typ, _ = b.noop()
        fetched = untagged(b, "FETCH")
        assert any(b"\\Flagged" in d for d in fetched), b.untagged_responses
        a.store("1", "+FLAGS", "(\\Deleted)")
        a.expunge()
        b.noop()
        assert untagged(b, "EXPUNGE") == [b"1"], b.untagged_responses
        a.append("INBOX", None, None, message("x@y.example", USER, "third"))
        b.noop()
        assert untagged(b, "EXISTS")[-1] == b"2", b.untagged_responses
    finally:
        a.logout()
        b.logout()


# --- bad input ----------------------------------------------------------------------


class Raw:
    """A hand-driven IMAP connection over TLS (bad input a library would not send)."""

    def __init__(self, server, *, login: bool = True) -> None:
        raw = socket.create_connection(("127.0.0.1", server.imaps_port), timeout=READ_TIMEOUT)
        self.sock = insecure_context().wrap_socket(raw, server_hostname="pigeon.test")
        self.f = self.sock.makefile("rb")
        self.greeting = self.f.readline()
        if login:
            self.send(f'l LOGIN {USER} "{PASSWORD}"\r\n'.encode())
            self.until(rb"^l OK")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until(self, pattern: bytes, timeout: float = READ_TIMEOUT) -> bytes:
        return _read_until(self.f, pattern, timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def test_unknown_commands_wrong_state_and_garbage_get_bad_or_no(server):
    c = Raw(server, login=False)
    try:
        c.send(b"a FROBNICATE\r\n")
        assert re.search(rb"^a BAD", c.until(rb"^a "), re.M)
        c.send(b"b SELECT INBOX\r\n")  # not logged in yet
        assert re.search(rb"^b (BAD|NO)", c.until(rb"^b "), re.M)
        c.send(b"\xff\xfe\x80 garbage \x00\r\n")
        assert b"BAD" in c.until(rb"BAD")
        c.send(b"c NOOP\r\n")
        c.until(rb"^c OK")
    finally:
        c.close()


def test_a_literal_over_max_literal_is_refused_and_the_session_goes_on(server):
    c = Raw(server)
    try:
        c.send(b"a APPEND INBOX {104857600}\r\n")  # 100 MB, over the 50 MB default
        assert re.search(rb"^a (NO|BAD)", c.until(rb"^a "), re.M)
        c.send(b"b NOOP\r\n")
        c.until(rb"^b OK")
        c.send(b"d APPEND INBOX {104857600+}\r\n")  # LITERAL+: the octets follow anyway
        assert b"BYE" in c.until(rb"BYE")
    finally:
        c.close()


def test_deep_mime_malformed_headers_and_8bit_garbage_are_served(server):
    depth = 300
    parts = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    deep = b"Subject: deep\r\n" + parts + b"Content-Type: text/plain\r\n\r\nbottom\r\n"
    broken = b"Subject: =?x?Q?\xff\xfe?=\r\nFrom: <<<@@@>>>\r\nTo: ,,,\r\nDate: yesterday\r\n\r\n\x80\xff\r\n"
    client = imaps(server)
    try:
        for body in (deep, broken):
            assert client.append("INBOX", None, None, body)[0] == "OK"
        client.select("INBOX")
        typ, data = client.fetch("1:2", "(ENVELOPE BODYSTRUCTURE BODY.PEEK[1])")
        assert typ == "OK", data
        typ, data = client.search(None, "BODY", "bottom")
        assert typ == "OK"
    finally:
        client.logout()


def test_a_silent_client_is_logged_out(pigeon_factory):
    server = pigeon_factory(CONFIG + "[imap]\nlogin_timeout = 1\n")
    c = Raw(server, login=False)
    try:
        assert b"* BYE" in c.until(rb"^\* BYE", timeout=READ_TIMEOUT)
        assert c.f.readline() == b""  # and closed
    finally:
        c.close()


def test_connections_past_the_per_ip_limit_are_refused_with_bye(pigeon_factory):
    server = pigeon_factory(CONFIG + "[imap]\nconnections_per_ip = 2\n")
    kept = []
    try:
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", server.imap_port), timeout=READ_TIMEOUT)
            kept.append(s)
            assert s.makefile("rb").readline().startswith(b"* OK")
        with socket.create_connection(("127.0.0.1", server.imap_port), timeout=READ_TIMEOUT) as s:
            assert s.makefile("rb").readline().startswith(b"* BYE")
    finally:
        for s in kept:
            s.close()


def test_smtp_is_not_counted_against_the_imap_limit(pigeon_factory):
    server = pigeon_factory(CONFIG + "[imap]\nconnections_per_ip = 1\n")
    with socket.create_connection(("127.0.0.1", server.imap_port), timeout=READ_TIMEOUT) as s:
        assert s.makefile("rb").readline().startswith(b"* OK")
        with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
            assert smtp.noop()[0] == 250


# --- accounts, reload, restart, workers ----------------------------------------------


def test_an_account_made_with_pigeon_user_add_reads_its_mail(server):
    password = "a long enough password"
    done = server.command(
        "user", "add", "bob@example.test", "--password-stdin", stdin=f"{password}\n".encode()
    )
    assert done.returncode == 0, done.stderr
    deliver(server, "for bob", rcpt="bob@example.test")
    delivered(server, 1, rcpt="bob@example.test")
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", server.imaps_port, ssl_context=insecure_context(), timeout=READ_TIMEOUT
    )
    try:
        client.login("bob@example.test", password)
        assert client.select("INBOX")[1] == [b"1"]
        assert b"for bob" in client.fetch("1", "(BODY.PEEK[HEADER])")[1][0][1]
    finally:
        client.logout()


def test_reload_moves_the_imap_listener(server):
    moved = free_port()
    text = server.config_path.read_text()
    server.config_path.write_text(
        text.replace(f"127.0.0.1:{server.imap_port}", f"127.0.0.1:{moved}")
    )
    done = server.command("reload", text=True)
    assert done.returncode == 0 and "imap.listen" in done.stdout, (done.stdout, done.stderr)
    with socket.create_connection(("127.0.0.1", moved), timeout=READ_TIMEOUT) as s:
        assert s.makefile("rb").readline().startswith(b"* OK")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.imap_port), timeout=READ_TIMEOUT).close()


def test_pigeon_restart_hands_the_imap_sockets_over(server):
    deliver(server, "across restart")
    delivered(server, 1)
    before = server.pid
    done = server.restart()
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert server.pid != before
    client = imaps(server)
    try:
        assert client.select("INBOX")[1] == [b"1"]
    finally:
        client.logout()


def test_with_worker_processes_the_main_one_serves_imap(pigeon_factory):
    server = pigeon_factory("workers = 2\n" + CONFIG)
    add_user(server)
    deliver(server, "via a worker")
    delivered(server, 1)
    client = imaps(server)
    try:
        assert client.select("INBOX")[1] == [b"1"]
    finally:
        client.logout()


def test_the_stop_says_bye_to_idle_sessions(server):
    c = Raw(server)
    try:
        c.send(b"s SELECT INBOX\r\n")
        c.until(rb"^s OK")
        c.send(b"i IDLE\r\n")
        c.until(rb"^\+ ")
        assert server.stop() == 0
        assert b"* BYE" in c.until(rb"^\* BYE")
    finally:
        c.close()
