"""Shared by the restart tests (test_restart.py, test_socket_activation.py)."""

from __future__ import annotations

import socket

from pigeon.testing.live import PigeonProcess, maildir_messages, pid_alive, recv_reply, wait_for
from pigeon.testing.loader import Loader, LoadReport

CONFIG = (
    '[domains."localhost"]\n[admin]\nmetrics_listen = ""\n'
    "[queue]\nfsync = false\n[timeouts]\nshutdown_grace = 10\n"
)
RCPT = "load@localhost"


def delivered(server: PigeonProcess) -> list:
    return maildir_messages(server.data_dir, RCPT)


def assert_all_delivered_once(server: PigeonProcess, report: LoadReport, extra: int = 0) -> None:
    """Every message the loader saw acknowledged is in the Maildir once (plus `extra` others)."""
    wanted = len(report.acked) + extra
    assert wait_for(lambda: len(delivered(server)) >= wanted, 60), report.summary()
    lost, twice = report.delivery(delivered(server))
    assert lost == {} and twice == {}, (lost, twice)


def restart_under_load(server: PigeonProcess, times: int, what: str) -> LoadReport:
    """A loader through `times` `pigeon restart`s; its report (printed)."""
    # The count bound must outlast the restarts: a fast machine sent the
    # default 5,000 before two of them were done (the time bound stays).
    with Loader("127.0.0.1", server.port, RCPT, clients=4, max_messages=100_000) as load:
        assert load.wait_acked(30), load.report.summary()
        for _ in range(times):
            old = server.pid
            done = server.restart()
            assert done.returncode == 0, done.stdout + done.stderr + server.log()
            assert server.pid != old
            assert wait_for(lambda: not pid_alive(old), 30)  # noqa: B023 - bounded, now
            assert load.wait_acked(load.acked_count() + 30), load.report.summary()
    print(f"\nloader through {times} restart(s) of {what}: {load.report.summary()}")
    return load.report


def session_in_data(port: int) -> socket.socket:
    """A session half-way through its DATA (the rest: "second half\\r\\n.\\r\\n")."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert recv_reply(s).startswith(b"220")
    s.sendall(b"EHLO slow.example.org\r\n")
    recv_reply(s)
    s.sendall(b"MAIL FROM:<slow@example.org>\r\n")
    assert recv_reply(s).startswith(b"250")
    s.sendall(f"RCPT TO:<{RCPT}>\r\n".encode())
    assert recv_reply(s).startswith(b"250")
    s.sendall(b"DATA\r\n")
    assert recv_reply(s).startswith(b"354")
    s.sendall(b"Subject: begun before the restart\r\nX-Load-Token: slow\r\n\r\nfirst half\r\n")
    return s
