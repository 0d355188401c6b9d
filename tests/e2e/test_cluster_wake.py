"""An idle node woken by NOTIFY, end to end (issue 17; app/clusterwake.py).

Two `pigeon serve` nodes on one database. Node "wake-idle" has a
`run_interval` of an hour: after its start-up scan (an empty queue) only a
wake-up makes it look at the queue again. Node "wake-busy" accepts 20
messages over SMTP but delivers one at a time (`queue.concurrency = 1`) to
an smtp-sink that waits a second before each DATA answer. The idle node
must deliver some of that mail long before its hour: nothing but the
commit's NOTIFY (store/pg/committer.py) can have told it there was mail.
Who delivered a copy is told by the sink's `X-Helo-Args:` (each node says
EHLO with its own `hostname`).
"""

from __future__ import annotations

import smtplib
from collections import Counter

import pytest
from cluster_helpers import START_TIMEOUT, node_config, queue_rows

from pigeon.testing.live import PigeonProcess, free_port, wait_for
from pigeon.testing.sink import SmtpSink

pytestmark = pytest.mark.e2e

MESSAGES = 20


def test_an_idle_node_delivers_mail_another_node_accepted(tmp_path, postgres):
    from pigeon.cli.main import main

    dsn = postgres.dsn(postgres.new_database())
    assert main(["db", "migrate", "--store", dsn]) == 0
    hop = free_port()
    with SmtpSink("127.0.0.1", hop, extra_args=("-w", "1")) as sink:
        idle = PigeonProcess(
            tmp_path / "idle",
            node_config(dsn, "wake-idle", hop, run_interval=3600),
            hostname="idle.test",
        ).start(timeout=START_TIMEOUT)
        busy = PigeonProcess(
            tmp_path / "busy",
            node_config(dsn, "wake-busy", hop, run_interval=3600, concurrency=1),
            hostname="busy.test",
        ).start(timeout=START_TIMEOUT)
        with smtplib.SMTP("127.0.0.1", busy.port, timeout=30) as client:
            for n in range(MESSAGES):
                body = f"Subject: wake {n}\r\n\r\nhi\r\n".encode()
                client.sendmail("sender@localhost", ["user@down.test"], body)

        def all_delivered() -> list[bytes] | None:
            got = sink.messages()
            return got if len(got) >= MESSAGES and not queue_rows(dsn) else None

        # Bounded far below the idle node's hour: only a wake-up explains a delivery by it.
        got = wait_for(all_delivered, timeout=120, interval=0.5)
        assert got, f"{len(sink.messages())} delivered\n" + idle.log()[-3000:]
        by = Counter(
            line.split(b": ", 1)[1].strip()
            for m in got
            for line in m.splitlines()
            if line.startswith(b"X-Helo-Args: ")
        )
        assert sum(by.values()) == MESSAGES, by
        assert by[b"idle.test"] > 0, f"the idle node delivered nothing: {by}"
        print(f"\nwake: copies by node {dict(by)}")
