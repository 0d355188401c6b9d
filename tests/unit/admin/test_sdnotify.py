"""sd_notify datagrams to $NOTIFY_SOCKET."""

from __future__ import annotations

import socket

from pigeon.admin import sdnotify


def test_notifications_reach_the_socket(tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        env = {"NOTIFY_SOCKET": path}
        assert sdnotify.ready("accepting mail", environ=env)
        assert s.recv(100) == b"READY=1\nSTATUS=accepting mail"
        assert sdnotify.reloading(environ=env)
        assert s.recv(100).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
        assert sdnotify.stopping(environ=env)
        assert s.recv(100) == b"STOPPING=1"


def test_without_systemd_nothing_happens(tmp_path):
    assert sdnotify.ready(environ={}) is False
    assert sdnotify.notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False
