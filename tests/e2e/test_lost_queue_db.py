"""Losing the queue database does not lose the queue (issue "The first day in
production", S7).

A real pigeon queues mail for a next hop that is down (a closed loopback
port), is stopped, and its queue.db is deleted, truncated to 0 bytes, or
overwritten with garbage. Deleted or empty: the next start rebuilds the
queue from the message files, and once the next hop (Postfix's smtp-sink)
is up every message is delivered. Garbage: the start is refused with one
line and exit status 73; `pigeon queue rebuild --from-files` repairs it.
"""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys

import pytest

from pigeon.testing.live import free_port, wait_for
from pigeon.testing.sink import SmtpSink

pytestmark = pytest.mark.e2e

BIG = 200 * 1024  # over the store's spill threshold: the spilled-spool path


def pigeon_cmd(server, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PIGEON_CONFIG=str(server.config_path))
    return subprocess.run(
        [sys.executable, "-m", "pigeon", *argv],
        capture_output=True,
        env=env,
        timeout=120,
        cwd=server.workdir,
    )


def queued_ids(server) -> list[str]:
    listed = pigeon_cmd(server, "queue", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return sorted(e["id"] for e in json.loads(listed.stdout)["entries"])


def message(n: int) -> bytes:
    body = (b"x" * 70 + b"\r\n") * (BIG // 72) if n == 0 else b"small body"
    return f"Subject: lost-db {n}\r\nX-Token: token-{n}\r\n\r\n".encode() + body + b"\r\nEND\r\n"


def queue_for_a_dead_hop(pigeon_factory, n: int = 4, workers: int = 1):
    """pigeon with `n` messages deferred for down.test (nobody listens on its port)."""
    port = free_port()
    server = pigeon_factory(
        f'workers = {workers}\nrelay_networks = ["127.0.0.0/8"]\n[domains."localhost"]\n'
        "[queue]\nmin_backoff = 3600\nmax_backoff = 7200\n[delivery]\nconnect_timeout = 2.0\n"
        f'[transports]\n"down.test" = "smtp:[127.0.0.1]:{port}"\n'
    )
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
        for i in range(n):
            rcpts = ["a@down.test", "b@down.test"] if i == 1 else ["a@down.test"]
            s.sendmail("sender@localhost", rcpts, message(i))
    assert wait_for(lambda: server.log().count("status=deferred") >= n + 1, timeout=30), (
        server.log()
    )
    ids = queued_ids(server)
    assert len(ids) == n
    return server, port, ids


def deliver_and_check(server, port: int, ids: list[str], n: int = 4) -> None:
    assert queued_ids(server) == ids, server.log()
    with SmtpSink("127.0.0.1", port) as sink:
        flushed = pigeon_cmd(server, "queue", "flush")
        assert flushed.returncode == 0, flushed.stderr
        got = wait_for(lambda: (m := sink.messages()) and len(m) >= n and m, timeout=60)
        assert got, server.log()
        for i in range(n):
            (copy,) = [m for m in got if f"X-Token: token-{i}".encode() in m]
            assert copy.rstrip().endswith(b"END"), f"message {i} truncated"
            assert b"#pigeon-queue-file" not in copy, "the preamble went out"
            if i == 0:
                assert copy.count(b"x" * 70) == BIG // 72
        assert b"<b@down.test>" in [m for m in got if b"token-1" in m][0]
    assert wait_for(lambda: queued_ids(server) == [], timeout=30), server.log()


def remove_db(server) -> None:
    for name in ("queue.db", "queue.db-wal", "queue.db-shm"):
        (server.data_dir / "queue" / name).unlink(missing_ok=True)


@pytest.mark.parametrize("how, workers", [("deleted", 1), ("truncated", 1), ("deleted", 2)])
def test_a_lost_queue_database_is_rebuilt_and_the_mail_delivered(pigeon_factory, how, workers):
    # workers=2: the main process recovers the queue before it forks.
    server, port, ids = queue_for_a_dead_hop(pigeon_factory, workers=workers)
    assert server.stop() == 0
    db = server.data_dir / "queue" / "queue.db"
    if how == "deleted":
        remove_db(server)
    else:
        os.truncate(db, 0)
    server.start()
    assert wait_for(lambda: "queue rebuilt 4 message(s)" in server.log(), timeout=20), server.log()
    assert "orphans_removed" not in server.log()
    deliver_and_check(server, port, ids)


def test_a_garbage_queue_database_is_refused_then_repaired(pigeon_factory):
    server, port, ids = queue_for_a_dead_hop(pigeon_factory)
    assert server.stop() == 0
    db = server.data_dir / "queue" / "queue.db"
    db.write_bytes(b"\x00garbage, not SQLite\n" * 4096)
    logged = len(server.log())
    with pytest.raises(RuntimeError):
        server.start()
    assert server.proc.returncode == 73
    new_lines = server.log()[logged:].splitlines()
    assert "Traceback" not in server.log()
    (line,) = [ln for ln in new_lines if "queue.db" in ln]
    assert "damaged" in line and "pigeon queue rebuild --from-files" in line
    listed = pigeon_cmd(server, "queue", "list")  # every command refuses
    assert listed.returncode == 73 and b"pigeon queue rebuild --from-files" in listed.stderr
    assert b"Traceback" not in listed.stderr

    repaired = pigeon_cmd(server, "queue", "rebuild", "--from-files")
    assert repaired.returncode == 0, repaired.stderr
    assert b"rebuilt 4 message(s)" in repaired.stdout
    assert len(list(db.parent.glob("queue.db.corrupt-*"))) == 1
    server.start()
    deliver_and_check(server, port, ids)


def test_rebuild_refuses_while_pigeon_runs(pigeon_factory):
    server = pigeon_factory('[domains."localhost"]\n')
    done = pigeon_cmd(server, "queue", "rebuild")
    assert done.returncode == 75 and b"pigeon is running" in done.stderr
    server.stop()
    done = pigeon_cmd(server, "queue", "rebuild")
    assert done.returncode == 0, done.stderr
    assert b"rebuilt 0 message(s)" in done.stdout
