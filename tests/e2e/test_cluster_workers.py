"""A node with `workers = 2` on a shared PostgreSQL queue (issue 17).

`workers` processes accept on the same listeners and commit to the queue
(app/workers.py); with `queue.store` set every one of them commits to the
database. The node must deliver everything its processes accepted, exactly
once, and its queue (the database's) must end empty. What the main process
alone owns (the node row, the manager, the leases) is the node's; the
other processes must not register as nodes of their own.
"""

from __future__ import annotations

import re
import smtplib

import pytest
from cluster_helpers import START_TIMEOUT, node_config, queue_rows

from pigeon.testing.live import PigeonProcess, free_port, wait_for
from pigeon.testing.sink import SmtpSink

pytestmark = pytest.mark.e2e

MESSAGES = 30


def test_a_node_with_two_workers_delivers_what_both_accepted(tmp_path, postgres):
    import psycopg

    from pigeon.cli.main import main

    dsn = postgres.dsn(postgres.new_database())
    assert main(["db", "migrate", "--store", dsn]) == 0
    hop = free_port()
    with SmtpSink("127.0.0.1", hop) as sink:
        node = PigeonProcess(
            tmp_path / "w", "workers = 2\n" + node_config(dsn, "workers-node", hop)
        ).start(timeout=START_TIMEOUT)
        for n in range(MESSAGES):  # a connection each: the kernel spreads them
            with smtplib.SMTP("127.0.0.1", node.port, timeout=30) as client:
                body = f"Subject: worker {n}\r\nX-N: {n}\r\n\r\nhi\r\n".encode()
                client.sendmail("sender@localhost", ["user@down.test"], body)

        def all_delivered() -> list[bytes] | None:
            got = sink.messages()
            return got if len(got) >= MESSAGES and not queue_rows(dsn) else None

        got = wait_for(all_delivered, timeout=120, interval=0.5)
        assert got, f"{len(sink.messages())} delivered\n" + node.log()[-3000:]
        numbers = sorted(
            int(line.split(b": ", 1)[1])
            for m in got
            for line in m.splitlines()
            if line.startswith(b"X-N: ")
        )
        assert numbers == list(range(MESSAGES)), numbers  # each once
        with psycopg.connect(dsn) as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM pigeon_nodes")]
        assert names == ["workers-node"], names
        # Both processes took mail (the kernel spreads connections; 30 to one is 2**-29).
        takers = set(
            re.findall(r"pigeon\[(\d+)\] INFO pigeon.smtpd: disconnect .* messages=1", node.log())
        )
        assert len(takers) == 2, takers
