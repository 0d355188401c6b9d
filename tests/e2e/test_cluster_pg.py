"""Two `pigeon serve` nodes on one PostgreSQL queue (issue 17; docs/cluster-status.md).

Each node has its own data directory, ports and control socket and the
same `queue.store`, a fresh database on the session's throw-away cluster
(pigeon.testing.postgres), migrated with `pigeon db migrate`. Mail accepted
by one node is listed by `pigeon queue list` on the other, and once its
next hop answers it is delivered exactly once, whichever node takes it.
"""

from __future__ import annotations

import json
import smtplib

import pytest

from pigeon.testing.live import free_port, wait_for

pytestmark = pytest.mark.e2e


def node_config(dsn: str, node: str, hop: int) -> str:
    return (
        'relay_networks = ["127.0.0.0/8"]\n'
        '[domains."localhost"]\n'
        f'[transports]\n"down.test" = "smtp:[127.0.0.1]:{hop}"\n'
        "[queue]\nrun_interval = 1.0\nmin_backoff = 3600\nmax_backoff = 7200\n"
        f'store = "{dsn}"\nnode = "{node}"\n'
        "[delivery]\nconnect_timeout = 2.0\n"
    )


def listed(server, state: str | None = None) -> list[dict]:
    argv = ["queue", "list", "--json"] + (["--state", state] if state else [])
    done = server.command(*argv)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["entries"]


def test_two_nodes_share_one_queue(pigeon_factory, postgres):
    from pigeon.cli.main import main

    dsn = postgres.dsn(postgres.new_database())
    assert main(["db", "migrate", "--store", dsn]) == 0
    hop = free_port()  # nothing listens until the sink starts: the mail is deferred
    a = pigeon_factory(node_config(dsn, "node-a", hop))
    b = pigeon_factory(node_config(dsn, "node-b", hop))
    assert a.port != b.port
    with smtplib.SMTP("127.0.0.1", a.port, timeout=10) as s:
        s.sendmail("sender@localhost", ["user@down.test"], b"Subject: shared\r\n\r\nhi\r\n")
    with smtplib.SMTP("127.0.0.1", b.port, timeout=10) as s:
        s.sendmail("sender@localhost", ["other@down.test"], b"Subject: too\r\n\r\nhi\r\n")

    def both_deferred() -> list[dict] | None:
        entries = listed(b, "deferred")
        return entries if len(entries) == 2 else None

    entries = wait_for(both_deferred, timeout=30)
    assert entries, a.log() + b.log()
    ids = sorted(e["id"] for e in entries)
    assert sorted(e["id"] for e in listed(a)) == ids, "node a does not see the same queue"
    import psycopg

    with psycopg.connect(dsn) as conn:  # the entries are the database's, not a node's
        rows = conn.execute("SELECT queue_id FROM pigeon_queue ORDER BY queue_id").fetchall()
    assert [r[0] for r in rows] == ids
    assert not (a.data_dir / "queue" / "queue.db").exists(), "node a kept a local queue"

    from pigeon.testing.sink import SmtpSink

    with SmtpSink("127.0.0.1", hop) as sink:
        assert a.command("queue", "flush").returncode == 0
        assert b.command("queue", "flush").returncode == 0
        assert wait_for(lambda: len(sink.messages()) >= 2, timeout=30), a.log() + b.log()
        assert wait_for(lambda: listed(a) == [], timeout=30), listed(a)
        got = sink.messages()
    subjects = sorted(s for m in got for s in (b"shared", b"too") if b"Subject: " + s in m)
    assert subjects == [b"shared", b"too"], "a message was lost or delivered twice"
