"""POP3 transcripts (tests/transcripts/pop3/*.pop3) through the real driver, login
rules and Maildir, in memory (pigeon.testing.pop3_transcript); and what they
leave in the Maildir: deletions at QUIT only (RFC 1939 §6), one session per
maildrop (RFC 2449 §8.1.2 IN-USE)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pigeon.testing.pop3_transcript import run_pop3

TRANSCRIPTS = sorted((Path(__file__).resolve().parents[2] / "transcripts" / "pop3").glob("*.pop3"))
ALL = ["1700000001.M1P1Q1.test,S=56,W=61", "1700000002.M1P1Q1.test", "1700000003.M1P1Q1.test"]

LOGIN = """S: +OK POP3 server ready
C: STLS
S: +OK Begin TLS negotiation
!starttls
C: USER alice@localhost
S: +OK Send the password
C: PASS secret
S~ \\+OK Logged in, 3 messages .*
"""


def test_there_are_transcripts():
    assert len(TRANSCRIPTS) >= 4


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.name)
def test_transcript(path):
    run_pop3(path.read_text(encoding="utf-8"), path.name)


def test_dele_is_applied_at_quit():
    run = run_pop3((TRANSCRIPTS[-1].parent / "stls-user-pass-retr-dele.pop3").read_text())
    assert run.remaining == [ALL[0], ALL[2]]


def test_a_dropped_connection_deletes_nothing():
    run = run_pop3(
        LOGIN + "C: DELE 1\nS: +OK Message 1 deleted\nC: DELE 2\nS: +OK Message 2 deleted\n"
    )
    assert run.remaining == ALL  # the runner ends by closing the client's side


def test_the_auto_logout_deletes_nothing():
    run = run_pop3((TRANSCRIPTS[0].parent / "autologout.pop3").read_text())
    assert run.remaining == ALL and run.closed


def test_retr_marks_nothing():
    run = run_pop3(
        LOGIN
        + "C: RETR 3\nS: +OK 18 octets\nS: Subject: three\nS: \nS: .\nC: QUIT\nS: +OK Bye, 3 messages left\n!close\n"
    )
    assert run.remaining == ALL
