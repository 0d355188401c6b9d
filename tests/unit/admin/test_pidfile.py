"""pigeon.admin.pidfile: atomic write, explicit mode, stale files replaced, live pigeons respected."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pigeon.admin.pidfile import PidFile, PidFileError, read_pid
from pigeon.testing.live import wait_for


@pytest.fixture
def open_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def test_write_and_remove(tmp_path, open_umask):
    path = tmp_path / "pigeon.pid"
    pid_file = PidFile(path)
    pid_file.claim()
    pid_file.write()
    assert path.read_text() == f"{os.getpid()}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not 0666 under umask 0
    assert [p.name for p in tmp_path.iterdir()] == ["pigeon.pid"]  # no temporary left
    pid_file.remove()
    assert not path.exists()


def test_remove_leaves_a_successors_file(tmp_path):
    path = tmp_path / "pigeon.pid"
    pid_file = PidFile(path)
    pid_file.write()
    path.write_text("999999\n")
    pid_file.remove()
    assert path.read_text() == "999999\n"


def test_a_symlink_is_replaced_not_followed(tmp_path):
    target = tmp_path / "target"
    target.write_text("keep\n")
    path = tmp_path / "pigeon.pid"
    path.symlink_to(target)
    PidFile(path).write()
    assert target.read_text() == "keep\n"
    assert not path.is_symlink() and read_pid(path) == os.getpid()


def test_stale_files_are_claimed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    for text in (f"{dead.pid}\n", "garbage\n", "", f"{os.getpid()}\n"):
        path = tmp_path / "pigeon.pid"
        path.write_text(text)
        PidFile(path).claim()  # no error


def test_a_live_pigeon_keeps_its_file(tmp_path):
    # A process whose command line says pigeon, like `python -m pigeon serve`.
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "pigeon"]) as proc:
        try:
            cmdline = Path(f"/proc/{proc.pid}/cmdline")
            assert wait_for(lambda: b"pigeon" in cmdline.read_bytes())  # exec'd
            path = tmp_path / "pigeon.pid"
            path.write_text(f"{proc.pid}\n")
            with pytest.raises(PidFileError) as info:
                PidFile(path).claim()
            assert str(info.value) == (
                f"admin.pid_file: {path}: pigeon (pid {proc.pid}) is "
                "already running with this PID file"
            )
        finally:
            proc.kill()


def test_an_unwritable_place_is_an_error_naming_the_key(tmp_path):
    path = tmp_path / "missing-dir" / "pigeon.pid"
    with pytest.raises(PidFileError) as info:
        PidFile(path).write()
    assert str(info.value) == f"admin.pid_file: {path}: cannot write it: No such file or directory"
