"""Several worker processes on shared listeners (config `workers`).

Every process accepts; mail accepted by a worker is delivered by the main
process's queue manager (nudged through the trigger pipe, not by the 60 s
rescan); SIGTERM stops them all.
"""

from __future__ import annotations

import re
import smtplib
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pigeon.testing.live import checker_pids, maildir_messages, wait_for

pytestmark = pytest.mark.e2e


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def send(port: int, n: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.sendmail(
            "a@example.org",
            [f"w{n % 3}@localhost"],
            f"Subject: worker test {n}\r\n\r\nbody {n}\r\n".encode(),
        )


def test_workers_share_the_listeners_and_all_mail_is_delivered(pigeon_factory):
    server = pigeon_factory('workers = 3\n[domains."localhost"]\n[queue]\nrun_interval = 60.0\n')
    main = server.proc.pid
    workers = [p for p in children_of(main) if p not in checker_pids(main)]
    assert len(workers) == 2, workers
    # Each process has its own checker process ([mail_auth] checker = "process",
    # checkers = 1 by default).
    checkers = [c for p in [main, *workers] for c in checker_pids(p)]
    assert len(checkers) == 3, checkers
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: send(server.port, n), range(60)))
    delivered = lambda: sum(
        len(maildir_messages(server.data_dir, f"w{i}@localhost")) for i in range(3)
    )
    assert wait_for(lambda: delivered() == 60, timeout=30), (delivered(), server.log()[-3000:])
    assert time.monotonic() - started < 30  # nudged, not waiting for the rescan

    def accepting_pids():
        return set(re.findall(r"pigeon\[(\d+)\] INFO pigeon\.smtpd: connect from", server.log()))

    # more than one process accepted (log lines are written in batches: wait)
    assert wait_for(lambda: len(accepting_pids()) >= 2, timeout=10), accepting_pids()
    assert server.stop() == 0
    for pid in workers + checkers:  # no orphan left behind
        assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0
