"""`pigeon restart` and the data-directory lock, through real `pigeon serve` processes.

A loader (pigeon.testing.loader) connects and sends without a pause through
the restart: no connection may be refused, no acknowledged message lost or
delivered twice. (Socket activation: tests/e2e/test_socket_activation.py.)
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from restart_helpers import (
    CONFIG,
    assert_all_delivered_once,
    delivered,
    restart_under_load,
    session_in_data,
)

from pigeon.testing.live import (
    PigeonProcess,
    free_port,
    maildir_messages,
    pid_alive,
    recv_reply,
    wait_for,
)
from pigeon.testing.sandbox import Sandbox

pytestmark = pytest.mark.e2e


def test_a_loader_sees_no_refusal_and_no_loss_through_pigeon_restart(pigeon_factory):
    server = pigeon_factory(CONFIG)
    report = restart_under_load(server, 2, "pigeon")
    assert report.refused == [] and report.failed == [], report.summary()
    assert_all_delivered_once(server, report)
    # The last process owns the queue: it answers on the control socket.
    done = server.command("status", text=True)
    assert done.returncode == 0 and f"pid {server.pid}" in done.stdout.replace(":", ""), done.stdout


def test_a_restart_with_workers_refuses_nothing_and_loses_nothing(pigeon_factory):
    server = pigeon_factory("workers = 2\n" + CONFIG)
    report = restart_under_load(server, 1, "pigeon with workers = 2")
    assert report.refused == [] and report.failed == [], report.summary()
    assert_all_delivered_once(server, report)


def test_sessions_in_progress_finish_on_the_old_process_while_the_new_one_accepts(
    pigeon_factory,
):
    server = pigeon_factory(CONFIG)
    old = server.pid
    slow = session_in_data(server.port)
    restart = subprocess.Popen(
        [sys.executable, "-m", "pigeon", "restart", "--config", str(server.config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: "accepting no more" in server.log(), 60), server.log()
        # A newcomer is greeted (by the new process: the old one stopped accepting).
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as newcomer:
            assert recv_reply(newcomer).startswith(b"220")
        assert pid_alive(old)  # still finishing its session
        # Asked meanwhile (its control socket still answers), it does not reload:
        # that would bind the listeners it has just left to the new process.
        done = server.command("reload", text=True)
        assert done.returncode == 78 and "handing over" in done.stderr, done.stderr
        slow.sendall(b"second half\r\n.\r\n")
        assert b"250 2.0.0 Ok: queued as" in recv_reply(slow)
        slow.sendall(b"QUIT\r\n")
        assert recv_reply(slow).startswith(b"221")  # an ordinary end, not a 421
        slow.close()
        out, err = restart.communicate(timeout=90)
    finally:
        if restart.poll() is None:
            restart.kill()
            restart.wait(10)
    assert restart.returncode == 0, out + err
    new = int(re.search(r"\(pid (\d+)\) took over", out).group(1))
    server.successor = new
    assert new != old and wait_for(lambda: not pid_alive(old), 30)
    assert wait_for(lambda: len(delivered(server)) == 1, 30)
    assert b"first half\nsecond half" in delivered(server)[0].read_bytes()


def test_a_restart_with_a_broken_configuration_changes_nothing(pigeon_factory):
    server = pigeon_factory(CONFIG)
    old = server.pid
    good = server.config_path.read_text()
    server.config_path.write_text(good + "[limits]\nmesage_size = 1\n")
    done = server.restart()
    assert done.returncode == 78, done.stdout + done.stderr
    assert "restart refused" in done.stderr and "mesage_size" in done.stderr
    # A configuration that loads but cannot start: the new process fails, the old goes on.
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        busy = taken.getsockname()[1]
        server.config_path.write_text(
            good.replace(f"127.0.0.1:{server.submission_port}", f"127.0.0.1:{busy}")
        )
        done = server.restart()
    finally:
        taken.close()
    assert done.returncode == 69, done.stdout + done.stderr
    assert "exited with status 69" in done.stderr
    server.config_path.write_text(good)
    assert server.pid == old and pid_alive(old)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        assert recv_reply(s).startswith(b"220")


def test_pigeon_restart_without_a_running_pigeon_says_so(tmp_path):
    proc = PigeonProcess(tmp_path / "w", CONFIG)
    proc.data_dir.mkdir(parents=True)
    done = proc.command("restart", text=True)
    assert done.returncode == 69 and done.stderr.count("\n") == 1, done.stderr


def uids(pid: int) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError("no Uid line")


def test_a_pigeon_that_dropped_root_restarts_as_its_user():
    """The new process runs as the user the old one became (it cannot be root
    again): it must reach its interpreter, configuration and data as that user.
    In a sandbox, where the interpreter is reachable by others (testing/sandbox.py)."""
    nobody = pwd.getpwnam("nobody")
    workdir = Path(tempfile.mkdtemp(prefix="pigeon-restart-"))
    os.chmod(workdir, 0o755)  # the dropped process reaches its data, as in /var/lib
    try:
        with Sandbox() as sandbox:
            proc = PigeonProcess(workdir, 'user = "nobody"\n' + CONFIG, wrap=sandbox.wrap())
            os.chmod(proc.config_path, 0o644)
            with proc:
                old = proc.pid
                done = proc.restart()
                assert done.returncode == 0, done.stdout + done.stderr + proc.log()
                assert wait_for(lambda: not pid_alive(old), 30)
                assert uids(proc.pid) == [nobody.pw_uid] * 4
                with smtplib.SMTP("127.0.0.1", proc.port, timeout=10) as client:
                    client.sendmail(
                        "a@example.org", ["after@localhost"], b"Subject: x\r\n\r\nhi\r\n"
                    )
                assert wait_for(lambda: maildir_messages(proc.data_dir, "after@localhost"), 30)
                assert (proc.data_dir / "pigeon.pid").read_text() == f"{proc.pid}\n"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- the data-directory lock ------------------------------------------------------------


@pytest.mark.parametrize("first, second", [(1, 1), (2, 2), (1, 2)])
def test_a_second_pigeon_on_the_same_data_directory_is_refused_in_one_line(
    pigeon_factory, first, second
):
    server = pigeon_factory(f"workers = {first}\n" + CONFIG)
    other = server.workdir / "second.toml"
    other.write_text(
        server.config_path.read_text().replace(f"workers = {first}\n", f"workers = {second}\n")
    )
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pigeon", "serve", "--config", str(other)),
            *("--listen", f"127.0.0.1:{free_port()}"),
            *("--submission-listen", "", "--submissions-listen", ""),
            *("--imap-listen", "", "--imaps-listen", ""),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = (done.stdout + done.stderr).splitlines()
    assert done.returncode == 75, lines
    assert len(lines) == 1, lines
    assert (
        f"the data directory {server.data_dir} is in use by pigeon (pid {server.pid}); "
        "stop it first or use 'pigeon restart'"
    ) in lines[0]
    # The first one goes on.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        assert recv_reply(s).startswith(b"220")
