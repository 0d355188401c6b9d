"""POP3 against a live pigeon with real clients: Python's poplib (STLS and
implicit TLS), fetchmail; mail delivered through SMTP and read back.

What a user relies on (docs/pop3.md): no password before TLS, UIDL stable
across sessions, TOP, deletions applied at QUIT only (never on a dropped
connection), one session per mailbox ([IN-USE]), bad commands answered, and
failed logins counted with submission's.
"""

from __future__ import annotations

import base64
import getpass
import os
import poplib
import smtplib
import socket
import ssl
import subprocess

import pytest
from secure_helpers import PASSWORD, USER, add_user, message

from pigeon.testing.live import maildir_messages, require_tool, wait_for
from pigeon.testing.testca import TestCa

pytestmark = pytest.mark.e2e

NAME = "pigeon.test"  # the certificate's name (the server's hostname)


def config(ca: TestCa, extra: str = "") -> str:
    cert, key = ca.issue(NAME)
    return (
        f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
        '[domains."example.test"]\nmailboxes = ["alice", "bob"]\n' + extra
    )


@pytest.fixture
def ca(tmp_path):
    return TestCa(tmp_path / "ca")


@pytest.fixture
def server(pigeon_factory, ca):
    proc = pigeon_factory(config(ca))
    add_user(proc)
    return proc


def trusting(ca: TestCa) -> ssl.SSLContext:
    """Verifies the chain against the test CA (poplib checks the name it
    dialled, 127.0.0.1, so only the chain is checked here; fetchmail checks the name)."""
    ctx = ssl.create_default_context(cafile=str(ca.ca_file))
    ctx.check_hostname = False
    return ctx


def deliver(server, *subjects: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as smtp:
        for subject in subjects:
            body = message("sender@example.org", USER, subject) + b".leading dot\r\n"
            smtp.sendmail("sender@example.org", [USER], body)
    assert wait_for(lambda: len(maildir_messages(server.data_dir, USER)) >= len(subjects))


def stls_session(server, ca, capa: dict | None = None) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", server.pop3_port, timeout=30)
    client.stls(trusting(ca))
    if capa is not None:
        capa.update(client.capa())  # what is offered inside TLS, before the login
    client.user(USER)
    client.pass_(PASSWORD)
    return client


def pop3s_session(server, ca) -> poplib.POP3_SSL:
    client = poplib.POP3_SSL("127.0.0.1", server.pop3s_port, context=trusting(ca), timeout=30)
    client.user(USER)
    client.pass_(PASSWORD)
    return client


def uids(client: poplib.POP3) -> list[bytes]:
    return [line.split()[1] for line in client.uidl()[1]]


def files(server) -> int:
    maildir = server.data_dir / "mailboxes" / "example.test" / "alice"
    return sum(1 for sub in ("new", "cur") for _ in (maildir / sub).iterdir())


def test_no_password_before_stls(server):
    client = poplib.POP3("127.0.0.1", server.pop3_port, timeout=30)
    try:
        capa = client.capa()
        assert "STLS" in capa and "USER" not in capa and "SASL" not in capa
        with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
            client.user(USER)
        with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
            client._shortcmd(
                "AUTH PLAIN " + base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
            )
    finally:
        client.quit()


def test_stls_uidl_stable_top_and_dele_at_quit_only(server, ca):
    deliver(server, "first", "second", "third")
    capa: dict = {}
    client = stls_session(server, ca, capa)
    assert "USER" in capa and capa["SASL"] == ["PLAIN", "LOGIN", "SCRAM-SHA-256"]
    assert "STLS" not in capa
    assert client.stat()[0] == 3
    before = uids(client)
    size = int(client.list(2).split()[2])
    resp, lines, _ = client.retr(2)
    assert b"Subject: second" in lines and lines[-1] == b".leading dot"  # unstuffed
    assert resp == b"+OK %d octets" % size
    assert sum(len(line) + 2 for line in lines) == size  # the exact size (RFC 1939 §5)
    top = client.top(1, 0)[1]
    assert b"Subject: first" in top and top[-1] == b"" and b"Hello." not in top
    client.dele(1)
    # Dropped without QUIT: nothing is deleted (RFC 1939 §6).
    client.sock.shutdown(socket.SHUT_RDWR)
    client.close()
    assert wait_for(lambda: _relogin_count(server, ca) == 3, timeout=15)
    client = stls_session(server, ca)
    assert uids(client) == before  # stable across sessions
    client.dele(1)
    assert files(server) == 3  # DELE only marks
    assert client.quit().startswith(b"+OK")
    assert files(server) == 2  # applied at QUIT, in the UPDATE state
    client = pop3s_session(server, ca)
    assert uids(client) == before[1:]
    client.quit()


def _relogin_count(server, ca) -> int:
    """The message count a new session sees (0 while the dropped one still holds the lock)."""
    try:
        client = stls_session(server, ca)
    except poplib.error_proto:
        return 0
    try:
        return client.stat()[0]
    finally:
        client.quit()


def test_implicit_tls_with_auth_plain_reads_the_message_as_delivered(server, ca):
    deliver(server, "over pop3s")
    client = poplib.POP3_SSL("127.0.0.1", server.pop3s_port, context=trusting(ca), timeout=30)
    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    assert client._shortcmd("AUTH PLAIN " + token).startswith(b"+OK")
    lines = client.retr(1)[1]
    stored = maildir_messages(server.data_dir, USER)[0].read_bytes()
    assert b"\r\n".join(lines) + b"\r\n" == stored.replace(b"\n", b"\r\n")
    client.quit()


def test_a_second_session_on_a_locked_mailbox_gets_in_use(server, ca):
    first = pop3s_session(server, ca)
    second = poplib.POP3_SSL("127.0.0.1", server.pop3s_port, context=trusting(ca), timeout=30)
    second.user(USER)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[IN-USE\]"):
        second.pass_(PASSWORD)
    first.quit()
    second.user(USER)
    assert second.pass_(PASSWORD).startswith(b"+OK")  # the lock went with the first session
    second.quit()


def test_bad_commands_get_err_and_the_session_goes_on(server, ca):
    client = pop3s_session(server, ca)
    for command in ("FOO", "USER bob", "RETR 7", "DELE x", "TOP 1"):
        with pytest.raises(poplib.error_proto, match=r"^b?'?-ERR"):
            client._shortcmd(command)
    assert client.noop().startswith(b"+OK")
    client.quit()


def test_failed_logins_count_with_submissions(pigeon_factory, ca):
    """One FailureLimiter for SMTP AUTH and POP3: the address is locked out for both."""
    server = pigeon_factory(config(ca, "[auth]\nslow_after = 5\nmax_failures = 3\n"))
    add_user(server)
    for _ in range(2):
        client = poplib.POP3_SSL("127.0.0.1", server.pop3s_port, context=trusting(ca), timeout=30)
        client.user(USER)
        with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
            client.pass_("wrong")
        client.quit()
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as smtp:
        smtp.starttls(context=trusting(ca))
        smtp.ehlo("client.example")
        token = base64.b64encode(f"\0{USER}\0wrong".encode()).decode()
        code, text = smtp.docmd("AUTH", "PLAIN " + token)
        assert (code, text[:5]) == (421, b"4.7.0")  # the third failure, over SMTP, locks it
    client = poplib.POP3_SSL("127.0.0.1", server.pop3s_port, context=trusting(ca), timeout=30)
    client.user(USER)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[SYS/TEMP\] Too many failed logins"):
        client.pass_(PASSWORD)  # the right password is not even tried
    assert client.sock.recv(100) == b""  # and the session was closed
    log = server.log()
    assert "SASL PLAIN authentication failed" in log


def test_fetchmail_pulls_mail_delivered_through_smtp(server, ca, tmp_path):
    fetchmail = require_tool("fetchmail")
    deliver(server, "for fetchmail one", "for fetchmail two")
    home = tmp_path / "fetchmail-home"
    home.mkdir()
    out = tmp_path / "fetched.mbox"
    rc = home / "fetchmailrc"
    rc.write_text(
        f"poll 127.0.0.1 with proto POP3 port {server.pop3_port} auth password\n"
        f'  user "{USER}" there with password "{PASSWORD}" is "{getpass.getuser()}" here\n'
        f'  sslproto "tls1.2+" sslcertck sslcertfile "{ca.ca_file}" sslcommonname "{NAME}"\n'
        f'  mda "cat >> {out}"\n'
        "  fetchall nokeep\n"
    )
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(home), FETCHMAILHOME=str(home))

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(
            [fetchmail, "-f", str(rc), "--nodetach", "--nosyslog", "-v"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            stdin=subprocess.DEVNULL,
        )

    first = run()
    assert first.returncode == 0, first.stdout + first.stderr  # 0: mail was retrieved
    fetched = out.read_bytes()
    assert b"Subject: for fetchmail one" in fetched and b"Subject: for fetchmail two" in fetched
    assert b"STLS" in (first.stdout + first.stderr).encode()  # upgraded with STLS
    assert files(server) == 0  # nokeep: deleted, at its QUIT
    again = run()
    assert again.returncode == 1, again.stdout + again.stderr  # 1: no mail


def test_pop3_listeners_can_be_turned_off(pigeon_factory, ca):
    server = pigeon_factory(config(ca, "[pop3]\nlisten = []\ntls_listen = []\n"))
    for port in (server.pop3_port, server.pop3s_port):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_auth_scram_sha_256_over_pop3s(server, ca):
    """RFC 5034 with RFC 7677: the keys `pigeon user add` stored; the server
    proves itself with the server-final message before +OK."""
    from pigeon.proto import scram

    client = poplib.POP3_SSL("127.0.0.1", server.pop3s_port, context=trusting(ca), timeout=30)
    first_bare = f"n={USER},r=fetchnonce".encode()
    reply = client._shortcmd("AUTH SCRAM-SHA-256 " + base64.b64encode(b"n,," + first_bare).decode())
    server_first = base64.b64decode(reply[2:])
    attrs = dict(a.split(b"=", 1) for a in server_first.split(b","))
    salt, iterations = base64.b64decode(attrs[b"s"]), int(attrs[b"i"])
    final_bare = b"c=biws,r=" + attrs[b"r"]
    auth_message = first_bare + b"," + server_first + b"," + final_bare
    proof = scram.client_proof(PASSWORD, salt, iterations, auth_message)
    final = final_bare + b",p=" + base64.b64encode(proof)
    reply = client._shortcmd(base64.b64encode(final).decode())
    signature = scram.expected_server_signature(PASSWORD, salt, iterations, auth_message)
    assert base64.b64decode(reply[2:]) == b"v=" + base64.b64encode(signature)
    assert client._shortcmd("").startswith(b"+OK Logged in")
    assert client.stat() == (0, 0)
    client.quit()


def test_reload_moves_the_pop3_listener(server, ca):
    from pigeon.testing.live import free_port

    moved = free_port()
    text = server.config_path.read_text()
    server.config_path.write_text(
        text.replace(f"127.0.0.1:{server.pop3_port}", f"127.0.0.1:{moved}")
    )
    done = server.command("reload", text=True, timeout=60)
    assert done.returncode == 0 and "pop3.listen" in done.stdout, done.stdout + done.stderr
    client = poplib.POP3("127.0.0.1", moved, timeout=30)
    assert client.getwelcome() == b"+OK POP3 server ready"
    client.quit()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.pop3_port), timeout=5).close()


def test_connections_per_ip_count_pop3_too(pigeon_factory, ca):
    """The listeners' limits (limits.connections_per_ip) cover the POP3 roles."""
    server = pigeon_factory(config(ca, "[limits]\nconnections_per_ip = 2\n"))
    first = poplib.POP3("127.0.0.1", server.pop3_port, timeout=30)
    second = poplib.POP3("127.0.0.1", server.pop3_port, timeout=30)
    try:
        with socket.create_connection(("127.0.0.1", server.pop3_port), timeout=30) as third:
            reply = third.makefile("rb").readline()
        assert reply == b"-ERR [SYS/TEMP] Too many connections, try again later\r\n"
    finally:
        first.quit()
        second.quit()
    assert wait_for(lambda: _greeting(server) == b"+OK POP3 server ready\r\n")


def _greeting(server) -> bytes:
    with socket.create_connection(("127.0.0.1", server.pop3_port), timeout=30) as sock:
        line = sock.makefile("rb").readline()
        sock.sendall(b"QUIT\r\n")
        return line


def test_a_server_stop_ends_an_idle_session_without_deleting(server, ca):
    """SIGTERM: an idle session is told and closed, not in the UPDATE state
    (RFC 1939 §6), so its DELE is not applied."""
    deliver(server, "kept over a stop")
    client = pop3s_session(server, ca)
    client.dele(1)
    assert server.stop() == 0
    assert client.file.readline() == b"-ERR [SYS/TEMP] Server shutting down, try again soon\r\n"
    assert client.file.readline() == b""
    assert files(server) == 1


def test_a_message_removed_by_another_reader_is_sys_temp_and_the_session_goes_on(server, ca):
    deliver(server, "gone", "stays")
    client = pop3s_session(server, ca)
    assert client.stat()[0] == 2
    maildir_messages(server.data_dir, USER)[0].unlink()  # an IMAP client expunged it
    with pytest.raises(poplib.error_proto, match=r"-ERR \[SYS/TEMP\]"):
        client.retr(1)
    assert b"Subject: stays" in client.retr(2)[1]
    client.dele(1)
    assert client.quit().startswith(b"+OK")  # a message gone already counts as removed
    assert files(server) == 1
