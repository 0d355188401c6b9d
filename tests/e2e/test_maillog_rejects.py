"""Golden lines: every reject path writes Postfix smtpd's line, with Postfix's field meanings.

Tools such as pflogsumm and fail2ban parse these lines: `from=` must be the
envelope sender and `to=` a recipient (a MAIL FROM rejection used to be
logged as `from=<>, to=<sender>`). Each case drives a live pigeon and
compares the mail log line (pigeon.mail) exactly; only a queue ID varies.
"""

from __future__ import annotations

import base64
import re
import smtplib
import socket
import time

import pytest
from secure_helpers import PASSWORD, USER, add_user, insecure_context

from pigeon.testing.live import recv_reply, wait_for

pytestmark = pytest.mark.e2e

CONFIG = (
    '[domains."example.test"]\nmailboxes = ["alice", "bob"]\n'
    "[limits]\nerrors = 3\njunk_commands = 2\nconnections_per_ip = 4\n"
    "[timeouts]\ncommand = 2\n[smtp]\netrn = true\n"
)
CLIENT = "unknown[127.0.0.1]"
QID = r"[0-9A-Z]+"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from pigeon.testing.live import PigeonProcess

    proc = PigeonProcess(tmp_path_factory.mktemp("maillog"), CONFIG)
    proc.start()
    add_user(proc)
    yield proc
    proc.stop()


def _mail_lines(proc) -> list[str]:
    return re.findall(r"pigeon\.mail: (.*)", proc.log())


def _expect(proc, pattern: str) -> None:
    """Exactly one mail log line matches `pattern` (a regex of the whole line)."""
    rx = re.compile(pattern)
    found = wait_for(lambda: [line for line in _mail_lines(proc) if rx.fullmatch(line)])
    assert len(found or []) == 1, (pattern, _mail_lines(proc))


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.greeting = recv_reply(self.sock)

    def cmd(self, line: str | bytes) -> bytes:
        self.sock.sendall((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return recv_reply(self.sock)

    def close(self) -> None:
        self.sock.close()


def _session(server, *commands: str | bytes) -> Client:
    """A client that has sent `commands` (HELO/EHLO first) and read each reply."""
    c = Client(server.port)
    for command in commands:
        c.cmd(command)
    return c


@pytest.mark.parametrize(
    "commands, refused, line",
    [
        (
            ["EHLO h1.test", "MAIL FROM:<s@a.test>"],
            "RCPT TO:<x@elsewhere.test>",
            "NOQUEUE: reject: RCPT from {client}: 554 5.7.1 Error: relay access denied; "
            "from=<s@a.test> to=<x@elsewhere.test> proto=ESMTP helo=<h1.test>",
        ),
        (
            ["HELO h2.test", "MAIL FROM:<>"],
            "RCPT TO:<nobody@example.test>",
            "NOQUEUE: reject: RCPT from {client}: 550 5.1.1 Error: recipient address rejected: "
            "user unknown; from=<> to=<nobody@example.test> proto=SMTP helo=<h2.test>",
        ),
        (
            ["EHLO h12.test"],
            "MAIL FROM:<big@a.test> SIZE=999999999",
            "NOQUEUE: reject: MAIL from {client}: 552 5.3.4 Error: message size exceeds fixed limit; "
            "from=<big@a.test> proto=ESMTP helo=<h12.test>",
        ),
        (
            ["EHLO h9.test"],
            "ETRN example.org",
            "NOQUEUE: reject: ETRN from {client}: 554 5.7.1 Error: ETRN access denied; "
            "proto=ESMTP helo=<h9.test>",
        ),
    ],
    ids=[
        "rcpt-relay-denied",
        "rcpt-unknown-user-helo-null-sender",
        "mail-size-over-limit",
        "etrn-denied",
    ],
)
def test_command_rejections(server, commands, refused, line):
    c = _session(server, *commands)
    assert c.cmd(refused)[:1] == b"5"
    c.cmd("QUIT")
    _expect(server, re.escape(line.format(client=CLIENT)))


def _submission(server) -> smtplib.SMTP_SSL:
    s = smtplib.SMTP_SSL(
        "127.0.0.1", server.submissions_port, timeout=10, context=insecure_context()
    )
    s.ehlo("h3.test")
    s.login(USER, PASSWORD)
    return s


def test_mail_sender_not_owned_has_from_and_no_to(server):
    with _submission(server) as s:
        assert s.mail("bob@example.test")[0] == 553
    _expect(
        server,
        re.escape(
            f"NOQUEUE: reject: MAIL from {CLIENT}: 553 5.7.1 Error: sender address not owned by the "
            "authenticated user; from=<bob@example.test> proto=ESMTP helo=<h3.test>"
        ),
    )


def test_end_of_message_from_header_not_owned(server):
    with _submission(server) as s:
        s.mail(USER)
        s.rcpt("bob@example.test")
        assert s.data(b"From: boss@example.test\r\nSubject: x\r\n\r\nhi\r\n")[0] == 553
    _expect(
        server,
        QID
        + re.escape(
            f": reject: END-OF-MESSAGE from {CLIENT}: 553 5.7.1 Error: From: header address not "
            "owned by the authenticated user; from=<alice@example.test> to=<bob@example.test> "
            "proto=ESMTP helo=<h3.test>"
        ),
    )


def test_end_of_message_content_with_two_recipients_has_no_to(server):
    c = _session(
        server,
        "EHLO h4.test",
        "MAIL FROM:<s@a.test>",
        "RCPT TO:<alice@example.test>",
        "RCPT TO:<bob@example.test>",
        "DATA",
    )
    assert c.cmd(b"Subject: nul\r\n\r\na\x00b\r\n.").startswith(b"554 5.6.0")
    c.cmd("QUIT")
    _expect(
        server,
        QID
        + re.escape(
            f": reject: END-OF-MESSAGE from {CLIENT}: 554 5.6.0 Error: message contains NUL "
            "characters; from=<s@a.test> proto=ESMTP helo=<h4.test>"
        ),
    )


def test_bare_lf_in_data(server):
    c = _session(
        server, "EHLO h5.test", "MAIL FROM:<s@a.test>", "RCPT TO:<alice@example.test>", "DATA"
    )
    assert c.cmd(b"Subject: smuggle\r\n\r\nline\nmore").startswith(b"521")
    _expect(
        server,
        QID
        + re.escape(
            f": reject: DATA from {CLIENT}: 521 5.5.2 Error: bare <CR> or <LF> received "
            "(RFC 5321 §2.3.8); from=<s@a.test> to=<alice@example.test> proto=ESMTP "
            "helo=<h5.test>"
        ),
    )


def test_auth_failure_is_postfix_sasl_warning(server):
    with smtplib.SMTP_SSL(
        "127.0.0.1", server.submissions_port, timeout=10, context=insecure_context()
    ) as s:
        s.ehlo("h6.test")
        token = base64.b64encode(b"\0nobody@example.test\0wrong").decode()
        assert s.docmd("AUTH", f"PLAIN {token}")[0] == 535
    _expect(
        server,
        re.escape(f"warning: {CLIENT}: SASL PLAIN authentication failed: authentication failure"),
    )


def test_too_many_errors(server):
    c = _session(server, "EHLO h7.test", "BOGUS", "BOGUS", "BOGUS")
    assert b"421 4.7.0" in c.cmd("BOGUS")
    _expect(server, re.escape(f"too many errors after UNKNOWN from {CLIENT}"))


def test_too_many_junk_commands(server):
    c = _session(server, "EHLO h8.test", "NOOP", "RSET")
    assert c.cmd("VRFY x@example.test").startswith(b"421 4.7.0")
    _expect(server, re.escape(f"too many junk commands after VRFY from {CLIENT}"))


def test_timeout_and_lost_connection(server):
    c = _session(server, "EHLO h10.test", "MAIL FROM:<s@a.test>")
    assert recv_reply(c.sock, timeout=30).startswith(b"421 4.4.2")  # timeouts.command = 2
    c.close()
    _expect(server, re.escape(f"timeout after MAIL from {CLIENT}"))
    _session(
        server, "EHLO h11.test", "MAIL FROM:<s@a.test>", "RCPT TO:<alice@example.test>"
    ).close()
    _expect(server, re.escape(f"lost connection after RCPT from {CLIENT}"))


def test_connect_limit(server):
    held = []
    try:
        for _ in range(20):  # bounded: until the per-address limit bites
            c = Client(server.port)
            held.append(c)
            if c.greeting.startswith(b"421"):
                break
            time.sleep(0.01)
        assert held[-1].greeting.startswith(b"421 4.7.0")
    finally:
        for c in held:
            c.close()
    _expect(
        server,
        re.escape(
            f"NOQUEUE: reject: CONNECT from {CLIENT}: 421 4.7.0 pigeon.test Error: too many "
            "connections from your address; proto=SMTP"
        ),
    )


def test_pregreet(pigeon_factory):
    proc = pigeon_factory('[domains."example.test"]\n[timeouts]\ngreet_pause = 0.5\n')
    with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as sock:
        sock.sendall(b"EHLO early.test\r\n")
        assert recv_reply(sock).startswith(b"554 ")  # no EHLO yet: no enhanced code
    _expect(
        proc,
        re.escape(
            f"NOQUEUE: reject: CONNECT from {CLIENT}: 554 5.5.0 Error: SMTP protocol "
            "synchronization (talked before greeting); proto=SMTP"
        ),
    )
