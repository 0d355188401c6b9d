"""End to end: repeated recipients merged, recipient delimiter, catch-all,
aliases_file (start-up and reload), and the bound on new mailboxes."""

from __future__ import annotations

import signal
import smtplib

import pytest

from pigeon.testing.live import maildir_messages, wait_for

pytestmark = pytest.mark.e2e

MESSAGE = b"From: s@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


def send(port: int, rcpts: list[str]) -> list[int]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.example")
        s.mail("s@example.org")
        codes = [s.rcpt(r)[0] for r in rcpts]
        if 250 in codes:
            assert s.data(MESSAGE)[0] == 250
        return codes


def test_repeated_recipients_are_stored_and_delivered_once(pigeon_factory):
    server = pigeon_factory(
        '[domains."example.test"]\nmailboxes = ["alice", "bob"]\n'
        '[aliases]\n"team@example.test" = ["alice@example.test", "bob@example.test"]\n'
    )
    rcpts = ["alice@example.test"] * 30 + [
        "ALICE@example.test",
        "team@example.test",
        "bob@example.test",
    ]
    assert send(server.port, rcpts) == [250] * len(rcpts)  # a repeat still gets its 250
    assert wait_for(lambda: "status=removed" in server.log(), timeout=20), server.log()
    assert len(maildir_messages(server.data_dir, "alice@example.test")) == 1
    assert len(maildir_messages(server.data_dir, "bob@example.test")) == 1
    # The envelope itself holds each recipient once: alice, team, bob (then bob
    # and alice from team's expansion are merged away at delivery).
    assert "nrcpt=3" in server.log() and "nrcpt=34" not in server.log(), server.log()


def test_delimiter_catch_all_and_aliases_file(pigeon_factory, tmp_path):
    aliases = tmp_path / "aliases"
    aliases.write_text("# local aliases\nroot: alice\nops: \\bob,\n  alice\n")
    server = pigeon_factory(
        f'aliases_file = "{aliases}"\n'
        '[domains."example.test"]\nmailboxes = ["alice", "bob", "inbox"]\n'
        '[aliases]\n"@example.test" = "inbox@example.test"\n'
    )
    assert send(server.port, ["alice+news@example.test"]) == [250]
    assert send(server.port, ["stranger@example.test"]) == [250]
    assert send(server.port, ["root+cron@example.test"]) == [250]
    alice = wait_for(
        lambda: (
            len(maildir_messages(server.data_dir, "alice@example.test")) == 2
            and maildir_messages(server.data_dir, "alice@example.test")
        ),
        timeout=20,
    )
    assert alice, server.log()
    heads = sorted(p.read_bytes().split(b"\nReceived:")[0] for p in alice)
    assert b"Delivered-To: alice+news@example.test" in heads[0] + heads[1]
    inbox = wait_for(lambda: maildir_messages(server.data_dir, "inbox@example.test"), timeout=20)
    assert (
        b"X-Original-To: stranger@example.test\nDelivered-To: inbox@example.test\n"
        in inbox[0].read_bytes()
    )

    # The aliases file is read again on SIGHUP; a broken one is refused, the old one stays.
    aliases.write_text("root: alice\nnewbie: bob\n")
    before = server.log().count("reload: applied")
    server.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: server.log().count("reload: applied") > before, timeout=15), (
        server.log()
    )
    assert send(server.port, ["newbie@example.test"]) == [250]
    assert wait_for(lambda: maildir_messages(server.data_dir, "bob@example.test"), timeout=20)
    aliases.write_text("root: |/usr/bin/procmail\n")
    server.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: f"aliases_file: {aliases}, line 1: " in server.log(), timeout=15)
    assert "reload rejected" in server.log()


def test_refused_aliases_file_stops_start_up(pigeon_factory, tmp_path):
    aliases = tmp_path / "aliases"
    aliases.write_text("postmaster: root\nroot: /var/mail/root\n")
    with pytest.raises(
        RuntimeError,
        match=r"aliases_file: .*aliases, line 2: \"/var/mail/root\": "
        r"file targets are not supported",
    ):
        pigeon_factory(f'aliases_file = "{aliases}"\n')


def test_new_mailboxes_are_bounded(pigeon_factory):
    server = pigeon_factory('[domains."open.test"]\n[limits]\nnew_mailboxes_per_hour = 5\n')
    rcpts = [f"user{i}@open.test" for i in range(8)] + ["user0@open.test"]
    codes = send(server.port, rcpts)
    assert codes == [250] * 5 + [450] * 3 + [250], codes
    assert wait_for(
        lambda: (
            len(list((server.data_dir / "mailboxes" / "open.test").iterdir())) == 5
            if (server.data_dir / "mailboxes" / "open.test").is_dir()
            else False
        ),
        timeout=20,
    )
