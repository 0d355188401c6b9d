"""With `workers > 1` the worker processes are "acceptor" roles (pigeon/app/roles.py):
they hold no queue manager of their own, so what needs one goes to the main
process's; and their listening sockets were bound before the fork, so a reload
cannot move them."""

from __future__ import annotations

import re
import smtplib
import socket
import subprocess
import sys

import pytest

from pigeon.testing.live import free_port, recv_reply, wait_for
from pigeon.testing.sink import SmtpSink

pytestmark = pytest.mark.e2e


def handled_by(server, sock: socket.socket) -> int:
    """The pid of the pigeon process that logged this connection (bounded wait: the
    log is written in batches)."""
    port = sock.getsockname()[1]
    pattern = re.compile(
        rf"pigeon\[(\d+)\] INFO pigeon\.smtpd: connect from \[127\.0\.0\.1\]:{port} "
    )
    found = wait_for(lambda: pattern.search(server.log()), timeout=10)
    assert found, server.log()[-2000:]
    return int(found.group(1))


def test_etrn_at_a_worker_is_carried_out_by_the_main_process_manager(pigeon_factory):
    peer_port = free_port()
    server = pigeon_factory(
        'workers = 2\nrelay_networks = ["127.0.0.1/32"]\n[domains."localhost"]\n'
        f'[transports]\n"later.test" = "smtp:[127.0.0.9]:{peer_port}"\n'
        "[smtp]\netrn = true\n"
        # Retries and rescans far in the future: only ETRN can make the message go now.
        "[queue]\nmin_backoff = 3600.0\nmax_backoff = 3600.0\nrun_interval = 600.0\n"
    )
    # Deferred by a peer that answers (4xx to RCPT), so the mail does not wait for
    # its next hop to come back (queue/waiting.py probes those every 30 s).
    with SmtpSink("127.0.0.9", peer_port, extra_args=("-r", "RCPT")):
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as c:
            c.sendmail("a@localhost", ["user@later.test"], b"Subject: etrn\r\n\r\nwaiting\r\n")
        assert wait_for(lambda: "status=deferred" in server.log(), timeout=20), server.log()

    # The kernel spreads connections over both processes: keep the first one a
    # worker took (asking the main process would prove nothing).
    for _ in range(40):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        assert recv_reply(s).startswith(b"220")
        if handled_by(server, s) != server.proc.pid:
            break
        s.sendall(b"QUIT\r\n")
        s.close()
    else:
        pytest.fail("no connection reached the worker process in 40 tries")
    with s, SmtpSink("127.0.0.9", peer_port) as sink:
        s.sendall(b"EHLO trusted.example\r\n")
        assert b"ETRN" in recv_reply(s)
        s.sendall(b"ETRN later.test\r\n")
        reply = recv_reply(s)
        assert reply.startswith(b"250 2.0.0"), reply
        got = wait_for(sink.messages, timeout=30)
        assert got and b"<user@later.test>" in got[0], server.log()[-3000:]


def test_listeners_shared_with_workers_change_at_the_next_restart(pigeon_factory):
    server = pigeon_factory('workers = 2\n[domains."localhost"]\n')
    extra = free_port()
    server.config_path.write_text(
        server.config_path.read_text().replace(
            f'listen = ["127.0.0.1:{server.port}"]',
            f'listen = ["127.0.0.1:{server.port}", "127.0.0.1:{extra}"]',
        )
        + '[domains."w.test"]\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "pigeon", "reload", "-c", str(server.config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert (done.returncode, done.stdout) == (
        0,
        "reload: applied domains\nreload: listen take effect at the next restart\n",
    ), done.stderr
    # Both processes took the domain; neither tried to bind the new address.
    assert wait_for(lambda: server.log().count("reload: applied domains") >= 2, timeout=15)
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as c:
        c.ehlo("c.example")
        c.mail("a@example.org")
        assert c.rcpt("x@w.test")[0] == 250
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", extra), timeout=5).close()
    assert "cannot listen" not in server.log()
