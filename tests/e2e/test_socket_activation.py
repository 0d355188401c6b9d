"""Socket activation: pigeon started by systemd-socket-activate (Debian's systemd package)
with listening sockets in the sd_listen_fds protocol, then restarted under load.

systemd-socket-activate binds the address, waits for the first connection,
and execs pigeon in its own process with LISTEN_FDS/LISTEN_PID (and
LISTEN_FDNAMES with --fdname): what systemd does with contrib/pigeon.socket.
"""

from __future__ import annotations

import os
import signal
import smtplib

import pytest
from restart_helpers import (
    CONFIG,
    RCPT,
    assert_all_delivered_once,
    restart_under_load,
    session_in_data,
)

from pigeon.testing.live import (
    PigeonProcess,
    free_port,
    maildir_messages,
    pid_alive,
    recv_reply,
    require_tool,
    wait_for,
)
from pigeon.testing.loader import Loader

pytestmark = pytest.mark.e2e


def passed_environment() -> list[str]:
    """systemd-socket-activate passes on only PATH, HOME, USER and TERM: the
    Python path too, for a pigeon run from a checkout rather than installed."""
    return ["-E", "PYTHONPATH"] if os.environ.get("PYTHONPATH") else []


def activated(tmp_path, *listen: str, names: str | None = None) -> PigeonProcess:
    """A pigeon to be started by systemd-socket-activate listening on `listen`
    (ports on 127.0.0.1: "{port}" is its smtp port, "{submission}" its
    submission port), with --fdname=`names`."""
    tool = require_tool("systemd-socket-activate")
    proc = PigeonProcess(tmp_path / "w", CONFIG)
    proc.wrap = [tool, *passed_environment()]
    for port in listen or ("{port}",):
        address = port.format(port=proc.port, submission=proc.submission_port)
        proc.wrap += ["-l", f"127.0.0.1:{address}"]
    if names is not None:
        proc.wrap.append(f"--fdname={names}")
    return proc


def send_one(port: int, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("a@example.org", [RCPT], f"Subject: {subject}\r\n\r\nhi\r\n".encode())


def test_the_inherited_socket_serves_the_role_it_is_named_for(tmp_path):
    with activated(tmp_path, names="smtp") as proc:
        assert (
            f'inherited socket 127.0.0.1:{proc.port} (file descriptor 3, name "smtp") serves smtp'
            in proc.log()
        )
        send_one(proc.port, "activated")
        assert wait_for(lambda: maildir_messages(proc.data_dir, RCPT))


def test_unnamed_sockets_serve_the_role_configured_at_their_address(tmp_path):
    with activated(tmp_path, "{port}", "{submission}") as proc:
        log = proc.log()
        assert f'127.0.0.1:{proc.port} (file descriptor 3, name "unknown") serves smtp' in log
        assert (
            f'127.0.0.1:{proc.submission_port} (file descriptor 4, name "unknown") '
            "serves submission" in log
        )
        with smtplib.SMTP("127.0.0.1", proc.submission_port, timeout=10) as client:
            client.ehlo("c.example.org")
            assert client.has_extn("starttls")  # the submission role's session


def test_a_socket_no_role_claims_stops_the_start_with_one_line(tmp_path):
    stray = free_port()
    proc = activated(tmp_path, "{port}", str(stray))
    with pytest.raises(RuntimeError) as failed:
        proc.start(timeout=30)
    assert "exited with 69" in str(failed.value)
    refusal = [line for line in proc.log().splitlines() if " ERROR " in line]
    assert len(refusal) == 1, proc.log()
    assert f'inherited socket 127.0.0.1:{stray} (file descriptor 4, name "unknown")' in refusal[0]
    assert "FileDescriptorName=smtp|submission|submissions" in refusal[0]


def test_a_loader_sees_no_refusal_and_no_loss_through_a_restart_of_a_socket_activated_pigeon(
    tmp_path,
):
    with activated(tmp_path, names="smtp") as proc:
        report = restart_under_load(proc, 2, "a socket-activated pigeon")
        assert report.refused == [] and report.failed == [], report.summary()
        assert_all_delivered_once(proc, report)
        # The new process got the systemd socket by its name again, in the same protocol.
        assert proc.log().count('(file descriptor 3, name "smtp") serves smtp') == 3


def test_a_loader_sees_no_refusal_and_no_loss_through_a_stop_and_start_on_the_held_socket(
    tmp_path,
):
    """`systemctl restart pigeon` with pigeon.socket: systemd keeps the socket
    while the old process stops and the new one starts; connections wait in
    the kernel's queue meanwhile. A shell holds the socket here (started by
    systemd-socket-activate) and runs pigeon twice, each with its own LISTEN_PID."""
    tool = require_tool("systemd-socket-activate")
    proc = PigeonProcess(tmp_path / "w", CONFIG)
    twice = '(exec env LISTEN_PID=$BASHPID "$@"); (exec env LISTEN_PID=$BASHPID "$@")'
    listen = ["-l", f"127.0.0.1:{proc.port}", "--fdname=smtp"]
    proc.wrap = [tool, *passed_environment(), *listen, "bash", "-c", twice, "bash"]
    holder = proc.start()
    pid_file = proc.data_dir / "pigeon.pid"
    try:
        first = int(pid_file.read_text())
        slow = session_in_data(proc.port)  # keeps the first one draining for a while
        # The count bound must outlast the stop and start: a fast machine can
        # send the default 5,000 before it is done (the time bound stays).
        with Loader("127.0.0.1", proc.port, RCPT, clients=4, max_messages=100_000) as load:
            assert load.wait_acked(30), load.report.summary()
            os.kill(first, signal.SIGTERM)  # systemctl stop: the socket stays with the holder
            assert wait_for(lambda: "draining" in proc.log(), 30)
            slow.sendall(b"second half\r\n.\r\n")
            assert b"250 2.0.0 Ok: queued as" in recv_reply(slow)
            slow.close()
            assert wait_for(lambda: not pid_alive(first), 60)
            assert load.wait_acked(load.acked_count() + 30, timeout=60), load.report.summary()
        report = load.report
        print(f"\nloader through a stop and start on the held socket: {report.summary()}")
        assert report.refused == [] and report.failed == [], report.summary()
        assert_all_delivered_once(proc, report, extra=1)  # and the slow one
    finally:
        second = int(pid_file.read_text()) if pid_file.exists() else None
        for pid in (first, second):
            if pid is not None and pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
                wait_for(lambda: not pid_alive(pid), 30)  # noqa: B023 - bounded, now
        holder.stop()
