"""pigeon.app.handover and pigeon.app.restart, the parts that need no second process:
the new process's checks before it accepts, and its word to the predecessor.

(The whole restart, with real processes and a loader: tests/e2e/test_restart.py.)
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys

import pytest

from pigeon.admin.control import ControlError
from pigeon.admin.pidfile import PidFileError
from pigeon.app.handover import READY_FD, HandoverFailed, Predecessor, start_successor
from pigeon.app.restart import Restart
from pigeon.config.load import load_config
from pigeon.config.schema import ListenAddress
from pigeon.net.smtp_service import SMTP, SUBMISSION


def config(tmp_path, **admin):
    return load_config(None, {"data_dir": str(tmp_path / "data"), "admin": admin})


def test_the_new_process_refuses_before_accepting_what_it_could_not_take_over(tmp_path):
    (tmp_path / "data").mkdir()
    Restart.preflight(config(tmp_path))  # data_dir is ours: nothing to say
    missing = tmp_path / "gone" / "pigeon.pid"
    with pytest.raises(PidFileError, match=rf"admin.pid_file: {missing}: this process"):
        Restart.preflight(config(tmp_path, pid_file=str(missing)))
    socket_path = tmp_path / "gone" / "control.sock"
    with pytest.raises(ControlError, match="admin.control_socket"):
        Restart.preflight(config(tmp_path, control_socket=str(socket_path)))


def test_the_predecessor_hears_one_byte_once_and_the_variable_is_gone():
    assert Predecessor.from_environment({}) is None
    assert Predecessor.from_environment({READY_FD: "not a number"}) is None
    r, w = os.pipe()
    try:
        environ = {READY_FD: str(w), "KEPT": "1"}
        predecessor = Predecessor.from_environment(environ)
        assert predecessor is not None and environ == {"KEPT": "1"}
        predecessor.accepting()
        predecessor.accepting()  # once only
        assert os.read(r, 10) == b"R"
        assert os.read(r, 10) == b""  # closed: its end of the pipe is ours no more
    finally:
        os.close(r)


# --- the fork and exec, with stand-in programs -----------------------------------------

#: A stand-in for the new pigeon: reports what it inherited, then says it accepts.
CHILD = """
import json, os, socket, sys
fds = int(os.environ["LISTEN_FDS"])
seen = {
    "pid_matches": os.environ["LISTEN_PID"] == str(os.getpid()),
    "names": os.environ["LISTEN_FDNAMES"],
    "restart": json.loads(os.environ["PIGEON_RESTART_LISTENERS"]),
    "ports": [socket.socket(fileno=3 + i).getsockname()[1] for i in range(fds)],
}
open(sys.argv[1], "w").write(json.dumps(seen))
os.write(int(os.environ["PIGEON_RESTART_FD"]), b"R")
"""


def served_sockets():
    managed, bound = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))
    served = [
        ((ListenAddress("127.0.0.1", bound.getsockname()[1]), SUBMISSION), bound.fileno(), False),
        ((ListenAddress("127.0.0.1", managed.getsockname()[1]), SMTP), managed.fileno(), True),
    ]
    return (managed, bound), served


def test_the_successor_gets_the_sockets_in_the_systemd_protocol(tmp_path):
    socks, served = served_sockets()
    report = tmp_path / "seen.json"
    try:
        pid = asyncio.run(start_successor(served, 30, [sys.executable, "-c", CHILD, str(report)]))
        os.waitpid(pid, 0)
    finally:
        for sock in socks:
            sock.close()
    seen = json.loads(report.read_text())
    managed_port, bound_port = served[1][0][0].port, served[0][0][0].port
    assert seen == {
        "pid_matches": True,
        "names": "smtp:submission",  # the service manager's first, then the configured ones
        "restart": [["submission", "127.0.0.1", bound_port]],
        "ports": [managed_port, bound_port],
    }


@pytest.mark.parametrize(
    "command, why",
    [
        (["/nonexistent/python"], "cannot start a new pigeon: /nonexistent/python: No such file"),
        ([sys.executable, "-c", "raise SystemExit(78)"], "exited with status 78 before accepting"),
        (
            [sys.executable, "-c", "import time; time.sleep(30)"],
            "did not accept connections within 1s; it was stopped",
        ),
    ],
)
def test_a_successor_that_does_not_accept_is_reaped_and_said_why(command, why):
    socks, served = served_sockets()
    try:
        with pytest.raises(HandoverFailed, match=why):
            asyncio.run(start_successor(served, 1, command))
    finally:
        for sock in socks:
            sock.close()
