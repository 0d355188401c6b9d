"""pigeon.app.restart and pigeon.app.handover, the parts that need no second process:
the new process's checks before it accepts, and its word to the predecessor.

(The whole restart, with real processes and a loader: tests/e2e/test_restart.py.)
"""

from __future__ import annotations

import os

import pytest

from pigeon.admin.control import ControlError
from pigeon.admin.pidfile import PidFileError
from pigeon.app.handover import READY_FD, Predecessor
from pigeon.app.restart import Restart
from pigeon.config.load import load_config


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
