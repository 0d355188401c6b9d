"""End to end with Python's smtplib: accept, queue, deliver to Maildir."""

from __future__ import annotations

import smtplib
import socket

import pytest

from pigeon.testing.live import maildir_messages, recv_reply, wait_for

pytestmark = pytest.mark.e2e

MESSAGE = (
    b"From: sender@example.org\r\nTo: anyone@localhost\r\nSubject: hello\r\n"
    b"Message-ID: <t1@example.org>\r\n\r\nHello pigeon.\r\n.leading dot line\r\n"
)


def test_message_reaches_maildir(pigeon):
    with smtplib.SMTP("127.0.0.1", pigeon.port, timeout=10) as s:
        code, _ = s.ehlo("client.example")
        assert code == 250
        assert s.has_extn("pipelining") and s.has_extn("chunking") and s.has_extn("8bitmime")
        assert int(s.esmtp_features["size"]) == 10_240_000
        s.mail("sender@example.org")
        s.rcpt("anyone@localhost")
        code, resp = s.data(MESSAGE)
        assert code == 250 and b"queued as" in resp
    files = wait_for(lambda: maildir_messages(pigeon.data_dir, "anyone@localhost"))
    assert len(files) == 1
    content = files[0].read_bytes()
    assert content.startswith(b"Return-Path: <sender@example.org>\n")
    assert b"Received: from client.example ([127.0.0.1])" in content
    assert b"with ESMTP id " in content
    assert b"\n.leading dot line\n" in content  # dot-stuffing undone exactly once
    assert b"Hello pigeon." in content


def test_alias_and_mailbox_list(pigeon):
    with smtplib.SMTP("127.0.0.1", pigeon.port, timeout=10) as s:
        s.ehlo("client.example")
        s.mail("")
        assert s.rcpt("nobody@example.test")[0] == 550
        assert s.rcpt("team@example.test")[0] == 250
        code, _ = s.data(b"Subject: to the team\r\n\r\nhi\r\n")
        assert code == 250
    for who in ("alice@example.test", "bob@example.test"):
        files = wait_for(lambda: maildir_messages(pigeon.data_dir, who))
        assert len(files) == 1, who
        assert files[0].read_bytes().startswith(b"Return-Path: <>\n")


def test_relay_denied_by_default(pigeon):
    with smtplib.SMTP("127.0.0.1", pigeon.port, timeout=10) as s:
        s.ehlo("client.example")
        s.mail("sender@example.org")
        code, text = s.rcpt("victim@elsewhere.example")
        assert (code, text[:5]) == (554, b"5.7.1")


def test_bdat_via_raw_socket(pigeon):
    body = b"Subject: chunked\r\n\r\nchunk one\r\n"
    with socket.create_connection(("127.0.0.1", pigeon.port), timeout=10) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"220")
        s.sendall(
            b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<chunky@localhost>\r\n"
            + b"BDAT %d LAST\r\n" % len(body)
            + body
        )
        lines = []
        while not lines or not lines[-1].startswith(b"250 2.0.0 Ok: queued"):
            line = f.readline()
            assert line, lines
            lines.append(line)
    files = wait_for(lambda: maildir_messages(pigeon.data_dir, "chunky@localhost"))
    assert files and b"chunk one" in files[0].read_bytes()


def test_pipelined_replies_come_in_one_write(pigeon):
    with socket.create_connection(("127.0.0.1", pigeon.port), timeout=10) as s:
        recv_reply(s)
        s.sendall(b"EHLO c\r\n")
        assert recv_reply(s).startswith(b"250-")
        s.sendall(
            b"MAIL FROM:<a@example.org>\r\nRCPT TO:<x@localhost>\r\nRCPT TO:<y@localhost>\r\n"
            b"NOOP\r\n"
        )
        # One recv must hold all four replies: they were written together.
        data = s.recv(4096)
        assert data.count(b"\r\n") == 4, data
