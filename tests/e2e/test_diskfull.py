"""Disk full and corrupted queue entries (issue 6, part 2).

Disk full: the data directory is a small tmpfs made by the test in pigeon's
own mount namespace (tests/e2e/faultfs: nothing stays mounted if the test
dies). A filler file takes every free block. These tests turn the
free-space reserve off (`limits.message_size = 0`, `queue.min_free = 0`)
to reach the commit-time failures; the last one tests the reserve.
  * reception: pigeon answers `452 4.3.1` (small message: the failure shows
    at the commit fsync; big message: at the first spool write; BDAT too),
    keeps the session and the process running, leaves no half-written spool
    or queue row behind, and accepts + delivers again once the filler is gone;
  * delivery: a message queued while there was room for the queue copy but
    not for the Maildir copy is deferred, not lost, and delivered when space
    returns.
Corruption: envelope rows with garbage, rows whose content file is gone,
rows with JSON of the wrong shape are moved to state 'corrupt' with a log
line (files kept); the queue manager keeps delivering the healthy mail.
"""

from __future__ import annotations

import errno
import json
import smtplib
import socket
import sqlite3
import time
from pathlib import Path

import pytest
from faultfs import FaultyPigeon

from pigeon.testing.live import PigeonProcess, maildir_messages, recv_reply, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RCPT = "box@localhost"
CONFIG = """[domains."localhost"]
[queue]
run_interval = 0.5
min_backoff = 0.5
max_backoff = 1.0
[admin]
metrics_listen = ""
"""
# The space arithmetic here counts one queue copy per message. A header a
# receive check puts on top of a spilled message (our Authentication-Results,
# [mail_auth]) costs a second copy at the commit (queue/spool.py): the
# checks are off on these small file systems.
NO_RESERVE = (
    CONFIG
    + "[limits]\nmessage_size = 0\n"
    + '[mail_auth]\nspf = "off"\ndkim = "off"\ndmarc = "off"\narc = "off"\n'
)


@pytest.fixture
def small_fs(tmp_path):
    """pigeon on an 8 MB tmpfs of its own, without the free-space reserve."""
    server = FaultyPigeon(tmp_path / "p", NO_RESERVE, fs_size="8m")
    yield server
    server.stop()


def data_of(server) -> Path:
    """The data directory as the test sees it (through pigeon's namespace if it has one)."""
    return server.data if isinstance(server, FaultyPigeon) else server.data_dir


def fill(directory: Path, leave: int = 0) -> Path:
    """Take every free block of the file system (then give back `leave` octets)."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        try:
            while True:
                fh.write(b"\0" * 512)
        except OSError:
            pass
        if leave:
            fh.truncate(max(0, fh.tell() - leave))
    return filler


def body(token: str, size: int) -> bytes:
    head = f"Subject: {token}\r\nX-Token: {token}\r\n\r\n".encode()
    line = f"{token} filler line for a disk-full test............\r\n".encode()
    return head + line * (size // len(line) + 1) + f"END {token}\r\n".encode()


def tokens_delivered(server) -> dict[str, bytes]:
    out = {}
    for p in maildir_messages(data_of(server), RCPT):
        data = p.read_bytes()
        for line in data.splitlines():
            if line.startswith(b"X-Token: "):
                out[line[9:].decode()] = data
    return out


def queue_rows(server) -> dict[str, str]:
    if isinstance(server, FaultyPigeon):
        return server.queue_states()
    db = sqlite3.connect(server.data_dir / "queue" / "queue.db", timeout=10)
    try:
        return dict(db.execute("SELECT queue_id, state FROM queue"))
    finally:
        db.close()


def bdat_send(port: int, token: str, size: int) -> bytes:
    content = body(token, size)
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    try:
        recv_reply(s)
        s.sendall(b"EHLO bdat.example\r\n")
        recv_reply(s)
        s.sendall(b"MAIL FROM:<a@example.org>\r\n")
        assert recv_reply(s).startswith(b"250")
        s.sendall(f"RCPT TO:<{RCPT}>\r\n".encode())
        assert recv_reply(s).startswith(b"250")
        s.sendall(f"BDAT {len(content)} LAST\r\n".encode() + content)
        reply = recv_reply(s, timeout=30)
        s.sendall(b"QUIT\r\n")
        return reply
    finally:
        s.close()


def test_disk_full_answers_452_keeps_running_and_recovers(small_fs):
    server = small_fs.start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=15) as s:
            s.sendmail("a@example.org", [RCPT], body("before", 2000))
        assert wait_for(lambda: "before" in tokens_delivered(server), timeout=15), server.log()

        filler = fill(server.data)
        refused = []
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
            for token, size in (("small", 2_000), ("big", 400_000), ("small2", 10_000)):
                with pytest.raises(smtplib.SMTPDataError) as info:
                    s.sendmail("a@example.org", [RCPT], body(token, size))
                code, text = info.value.smtp_code, info.value.smtp_error
                assert (code, text[:5]) == (452, b"4.3.1"), (token, code, text, server.log())
                refused.append(token)
            # The session is still usable after a 452.
            assert s.noop()[0] == 250
        reply = bdat_send(server.port, "bdat", 200_000)
        assert reply.startswith(b"452 4.3.1"), reply
        refused.append("bdat")
        assert server.proc.poll() is None, "pigeon died on a full disk:\n" + server.log()
        assert "Traceback" not in server.log(), server.log()
        # Nothing half-recorded: no spool left, no queue row for a refused message.
        assert list((server.data / "queue" / "tmp").iterdir()) == []
        assert queue_rows(server) == {}

        filler.unlink()  # space returns
        with smtplib.SMTP("127.0.0.1", server.port, timeout=15) as s:
            s.sendmail("a@example.org", [RCPT], body("after", 400_000))
        assert wait_for(lambda: "after" in tokens_delivered(server), timeout=15), server.log()
        got = tokens_delivered(server)
        assert not set(refused) & set(got), "a message answered 452 was delivered"
        for token, data in got.items():
            assert data.rstrip().endswith(f"END {token}".encode()), f"{token} is truncated"
        print(f"\ndisk full: refused with 452 4.3.1: {refused}; delivered: {sorted(got)}")
    finally:
        server.stop()


def test_disk_full_at_delivery_defers_and_delivers_when_space_returns(small_fs):
    server = small_fs.start()
    try:
        size = 1_500_000
        # Room for the queue copy (and the database), not for the Maildir copy.
        filler = fill(server.data, leave=int(size * 1.4))
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
            s.sendmail("a@example.org", [RCPT], body("squeezed", size))
        assert wait_for(lambda: "status=deferred" in server.log(), timeout=15), server.log()
        assert "squeezed" not in tokens_delivered(server)
        assert server.proc.poll() is None
        assert not list((server.data / "mailboxes").glob("*/*/new/*")), "partial delivery"
        filler.unlink()
        got = wait_for(lambda: tokens_delivered(server).get("squeezed"), timeout=20)
        assert got, (
            "deferred message not delivered after space returned:\n"
            + server.log()
            + f"\nqueue: {queue_rows(server)}"
        )
        assert got.rstrip().endswith(b"END squeezed")
        assert wait_for(lambda: queue_rows(server) == {}, timeout=10), queue_rows(server)
    finally:
        server.stop()


def test_corrupt_queue_entries_are_quarantined_never_crash_the_manager(tmp_path):
    # A server is started once so its data directory exists, then stopped:
    # the test queues messages with the store API and damages them offline.
    server = PigeonProcess(tmp_path / "p", CONFIG).start()
    try:
        server.stop()
        from pigeon.queue.model import Envelope, Recipient
        from pigeon.queue.store import QueueStore

        store = QueueStore(server.data_dir / "queue")
        store.open()
        ids = {}
        for name in ("good", "garbage", "wrong-shape", "list", "no-content", "bad-recipient"):
            spool = store.new_spool()
            spool.write(body(name, 500))
            store.commit(
                spool, Envelope(spool.queue_id, "a@example.org", [Recipient(RCPT)], size=spool.size)
            )
            ids[name] = spool.queue_id
        store.close()
        db = sqlite3.connect(server.data_dir / "queue" / "queue.db")
        with db:
            db.execute("UPDATE queue SET envelope=? WHERE queue_id=?", ("{garbage", ids["garbage"]))
            db.execute(
                "UPDATE queue SET envelope=? WHERE queue_id=?",
                (json.dumps({"queue_id": 5, "recipients": "nope"}), ids["wrong-shape"]),
            )
            db.execute("UPDATE queue SET envelope=? WHERE queue_id=?", ("[1, 2, 3]", ids["list"]))
            db.execute(
                "UPDATE queue SET envelope=? WHERE queue_id=?",
                (
                    json.dumps(
                        {
                            "queue_id": ids["bad-recipient"],
                            "sender": "",
                            "recipients": [{"address": 7, "status": "weird"}],
                        }
                    ),
                    ids["bad-recipient"],
                ),
            )
        db.close()
        (server.data_dir / "queue" / "msg" / ids["no-content"]).unlink()

        server.start()
        assert wait_for(lambda: "good" in tokens_delivered(server), timeout=15), server.log()
        bad = {k: v for k, v in ids.items() if k != "good"}

        def quarantined():
            rows = queue_rows(server)
            return all(rows.get(q) == "corrupt" for q in bad.values())

        assert wait_for(quarantined, timeout=15), (queue_rows(server), server.log())
        # The log lines come a few ms after the rows change (batched writer).
        wait_for(lambda: all(f"queue_id={q}" in server.log() for q in bad.values()), timeout=10)
        log = server.log()
        for name, qid in bad.items():
            assert f"queue_id={qid}" in log and "corrupt" in log, (name, log)
        # Quarantine keeps the evidence: content files are not deleted.
        for name in ("garbage", "wrong-shape", "list", "bad-recipient"):
            assert (server.data_dir / "queue" / "msg" / bad[name]).exists(), name
        # The manager is alive: new mail still flows, and a garbage row
        # inserted while running is quarantined too.
        db = sqlite3.connect(server.data_dir / "queue" / "queue.db", timeout=10)
        with db:
            db.execute("INSERT INTO queue VALUES ('0000000000ZZZZZ', 'incoming', 0, 'not json')")
        db.close()
        with smtplib.SMTP("127.0.0.1", server.port, timeout=15) as s:
            s.sendmail("a@example.org", [RCPT], body("later", 500))
        assert wait_for(lambda: "later" in tokens_delivered(server), timeout=15), server.log()
        assert wait_for(
            lambda: queue_rows(server).get("0000000000ZZZZZ") == "corrupt", timeout=15
        ), server.log()
        assert server.proc.poll() is None
        assert "Traceback" not in server.log(), server.log()
    finally:
        server.stop()


def smtp_line(sock: socket.socket, line: str) -> bytes:
    sock.sendall(line.encode() + b"\r\n")
    return recv_reply(sock)


def test_below_the_reserve_mail_and_data_get_452_before_the_disk_is_full(tmp_path):
    """queue.min_free (queue/space.py): refused at MAIL FROM (also for a SIZE=
    that would cross the reserve) and at DATA, while the disk still has room;
    accepted again once space is back."""
    from pigeon.queue.space import DEFAULT_TTL

    reserve = (
        CONFIG.replace("[queue]\n", "[queue]\nmin_free = 8388608\n")
        + "[limits]\nmessage_size = 5000000\n"
    )  # reserve: 8 MiB (> 1.5 x 5 MB)
    server = FaultyPigeon(tmp_path / "p", reserve, fs_size="12m").start()
    try:
        s = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        recv_reply(s)
        assert smtp_line(s, "EHLO client.example").startswith(b"250")
        assert smtp_line(s, "MAIL FROM:<a@example.org> SIZE=4500000").startswith(
            b"452 4.3.1 Insufficient system storage"
        )  # 12.5 MB - 4.5 MB < 8 MiB
        assert smtp_line(s, "MAIL FROM:<a@example.org> SIZE=1000").startswith(b"250")
        assert smtp_line(s, f"RCPT TO:<{RCPT}>").startswith(b"250")
        # Something else takes the disk down to 7 MiB free, under the reserve.
        with open(server.data / "hog", "wb") as fh:
            fh.write(b"\0" * (server.free_bytes() - 7 * 1024 * 1024))
        time.sleep(DEFAULT_TTL * 2)  # the cached statvfs expires
        assert smtp_line(s, "DATA").startswith(b"452 4.3.1")
        assert smtp_line(s, "RSET").startswith(b"250")
        assert smtp_line(s, "MAIL FROM:<a@example.org>").startswith(b"452 4.3.1")
        assert server.free_bytes() > 6 * 1024 * 1024  # refused with room to spare
        (server.data / "hog").unlink()

        def accepted() -> bool:
            return smtp_line(s, "MAIL FROM:<a@example.org>").startswith(b"250")

        assert wait_for(accepted, timeout=10, interval=DEFAULT_TTL)
        s.close()
        with smtplib.SMTP("127.0.0.1", server.port, timeout=15) as c:
            c.sendmail("a@example.org", [RCPT], body("after", 2000))
        assert wait_for(lambda: "after" in tokens_delivered(server), timeout=15), server.log()
        # The log is written in batches (obs/logsetup.py): wait for the line.
        assert wait_for(lambda: "free again" in server.log(), timeout=5), server.log()
        log = server.log()
        assert log.count("below the reserve of 8.0 MiB") == 1, log
        assert log.count("free again") == 1, log
        assert "Traceback" not in log
    finally:
        server.stop()
