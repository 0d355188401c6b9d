"""`[queue] local_at_accept`: local mail written into its Maildirs before the 250 (qmgr/direct.py).

A live pigeon with the faultfs shim (tests/e2e/faultfs) shows which path a
message took: with the queue's writes failing, local mail is still accepted
and delivered (it never touches the queue), mail with a remote recipient is
not; with the switch off, local mail needs the queue again. A recipient whose
copy cannot be written is queued while the others stay delivered, once.
(A message that needs the queue here is one asking for a success notice,
RFC 3461: the queue manager sends those.) With `workers = 2` every process delivers what it accepted.
"""

from __future__ import annotations

import re
import smtplib
from pathlib import Path

import pytest
from faultfs import shimmed_pigeon

from pigeon.testing.live import PigeonProcess, maildir_messages, require_tool, wait_for

pytestmark = pytest.mark.e2e

DOMAIN = '[domains."example.test"]\nmailboxes = ["alice", "bob"]\n'


def send(
    port: int, rcpts: list[str], token: str, options: tuple[str, ...] = ()
) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.test")
        s.mail("sender@client.test")
        for rcpt in rcpts:
            assert s.rcpt(rcpt, options)[0] == 250
        return s.data(f"Subject: {token}\r\n\r\nbody {token}\r\n")


def faulty_server(tmp_path: Path, extra: str, fault_under: str) -> tuple[PigeonProcess, Path]:
    require_tool("gcc")
    return shimmed_pigeon(tmp_path, DOMAIN + extra, fault_under)


@pytest.mark.parametrize("local_at_accept", [True, False])
def test_local_mail_does_not_need_the_queue(tmp_path, local_at_accept):
    server, control = faulty_server(
        tmp_path, f"[queue]\nlocal_at_accept = {str(local_at_accept).lower()}\n", "queue"
    )
    server.start()
    try:
        control.write_text("EIO write fsync")  # every queue write fails from now on
        code, _ = send(server.port, ["alice@example.test", "bob@example.test"], "local")
        # A success notice is the queue's to send (RFC 3461): that message needs the queue.
        queued, _ = send(server.port, ["alice@example.test"], "notify", ("NOTIFY=SUCCESS",))
        assert queued == 451, "a message the queue must hold was acknowledged"
        if local_at_accept:
            assert code == 250
            for user in ("alice", "bob"):
                (copy,) = maildir_messages(server.data_dir, f"{user}@example.test")
                assert b"Subject: local" in copy.read_bytes()
            assert wait_for(lambda: "status=removed" in server.log())
            log = server.log()
            qid = re.search(r"(\w+): client=\S+ helo=client\.test,.* nrcpt=2, .*\(queued\)", log)
            assert qid, log
            lines = [ln for ln in log.splitlines() if f"{qid.group(1)}:" in ln]
            assert [re.search(r"status=(\w+)|\((queued)\)", ln).group(0) for ln in lines] == [
                "(queued)",
                "status=sent",
                "status=sent",
                "status=removed",
            ]
        else:
            assert code == 451, "the queue failed, yet the message was acknowledged"
            assert maildir_messages(server.data_dir, "alice@example.test") == []
        assert b"Subject: notify" not in b"".join(
            p.read_bytes() for p in maildir_messages(server.data_dir, "alice@example.test")
        )
    finally:
        control.unlink(missing_ok=True)
        server.stop()


def test_a_copy_that_cannot_be_written_is_queued_and_the_others_are_not_repeated(tmp_path):
    server, control = faulty_server(
        tmp_path, "[queue]\nmin_backoff = 1\nmax_backoff = 2\n", "mailboxes/example.test/bob"
    )
    server.start()
    try:
        control.write_text("EDQUOT write")  # bob's mailbox is over its quota
        code, text = send(server.port, ["alice@example.test", "bob@example.test"], "partial")
        assert code == 250, text
        qid = re.search(rb"queued as (\S+)", text).group(1).decode()
        assert len(maildir_messages(server.data_dir, "alice@example.test")) == 1
        assert wait_for(lambda: f"{qid}: to=<bob@example.test>" in server.log(), timeout=30)
        assert maildir_messages(server.data_dir, "bob@example.test") == []
        control.unlink()  # room again: the queue's retry delivers bob's copy
        assert wait_for(lambda: maildir_messages(server.data_dir, "bob@example.test"), timeout=60)
        assert wait_for(lambda: f"{qid}: status=removed" in server.log(), timeout=30)
        assert len(maildir_messages(server.data_dir, "alice@example.test")) == 1
        sent = re.findall(rf"{qid}: to=<(\w+)@example\.test>.*status=sent", server.log())
        assert sorted(sent) == ["alice", "bob"]
    finally:
        control.unlink(missing_ok=True)
        server.stop()


def test_every_worker_delivers_the_local_mail_it_accepts(tmp_path):
    server = PigeonProcess(tmp_path / "p", "workers = 2\n" + DOMAIN)
    server.start()
    try:
        pids: set[str] = set()
        for i in range(60):  # the kernel spreads connections; bounded
            assert send(server.port, ["alice@example.test"], f"w{i}")[0] == 250
            pids = set(
                re.findall(
                    r"pigeon\[(\d+)\] INFO pigeon\.mail: \w+: to=.*status=sent", server.log()
                )
            )
            if len(pids) == 2:
                break
        assert len(pids) == 2, f"only {pids} delivered"
        assert len(maildir_messages(server.data_dir, "alice@example.test")) == i + 1
    finally:
        server.stop()
