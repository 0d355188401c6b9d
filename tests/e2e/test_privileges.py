"""Started as root with `user` set, pigeon binds, then runs as that user.

The data directory ends up owned by the user with mode 0711 (private
inside; searchable for the submit socket), the process's
real and effective uid are the user's, and mail still flows (the queue and
the Maildir are writable by it). Links the pigeon user planted in the data
directory are never followed by root, and a data_dir that is itself a link is
refused (docs/security.md).
"""

from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import tempfile
from pathlib import Path

import pytest

from pigeon.testing.live import (
    PigeonProcess,
    checker_pids,
    free_port,
    maildir_messages,
    wait_for,
)

pytestmark = pytest.mark.e2e


def uids(pid: int) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError("no Uid line")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_root_drops_to_the_configured_user():
    nobody = pwd.getpwnam("nobody")
    # pytest's tmp dirs are private to root: the dropped process could not
    # reach its data there, as in real life /var/lib must be traversable.
    workdir = Path(tempfile.mkdtemp(prefix="pigeon-priv-"))
    os.chmod(workdir, 0o755)
    try:
        proc = PigeonProcess(workdir, 'user = "nobody"\n[domains."localhost"]\n')
        with proc:
            assert wait_for(lambda: uids(proc.proc.pid) == [nobody.pw_uid] * 4), uids(proc.proc.pid)
            # The checker process of the inbound checks (app/checker.py) too.
            checkers = wait_for(lambda: checker_pids(proc.proc.pid))
            for checker in checkers:
                assert wait_for(lambda: uids(checker) == [nobody.pw_uid] * 4), uids(checker)
            st = os.stat(proc.data_dir)
            # 0711: searchable, so local users reach the submit socket; nothing
            # in it is readable by them (pigeon.admin.submitsock).
            assert st.st_uid == nobody.pw_uid and (st.st_mode & 0o777) == 0o711
            assert (proc.data_dir / "queue").stat().st_mode & 0o077 == 0
            with smtplib.SMTP("127.0.0.1", proc.port, timeout=10) as s:
                s.sendmail("a@example.org", ["dropped@localhost"], b"Subject: x\r\n\r\nhi\r\n")
            files = wait_for(lambda: maildir_messages(proc.data_dir, "dropped@localhost"))
            assert files and os.stat(files[0]).st_uid == nobody.pw_uid
            assert os.stat(files[0]).st_mode & 0o077 == 0  # private
            # The log is written behind (obs/logsetup.py): wait for the line.
            assert wait_for(lambda: "dropped privileges: now running as nobody" in proc.log())
            pid_file = proc.data_dir / "pigeon.pid"  # written as root, then given
            assert pid_file.read_text() == f"{proc.proc.pid}\n"
            st = os.stat(pid_file)
            assert (st.st_uid, st.st_mode & 0o777) == (nobody.pw_uid, 0o644)
            assert proc.stop() == 0  # a clean exit as nobody
        assert not (proc.data_dir / "pigeon.pid").exists()  # removed by the dropped process
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_unknown_user_is_a_configuration_error(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "p.toml"
    config.write_text('user = "no-such-user-pigeon"\n')
    out = subprocess.run(
        [sys.executable, "-m", "pigeon", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 78
    assert 'user: no such user "no-such-user-pigeon"' in out.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_links_planted_in_the_data_dir_are_not_followed_at_start_up():
    workdir = Path(tempfile.mkdtemp(prefix="pigeon-priv-"))
    os.chmod(workdir, 0o755)
    try:
        secret = workdir / "shadow"  # stands for a root-owned system file
        secret.write_text("root:secret\n")
        secret.chmod(0o640)
        system_dir = workdir / "ssl"
        system_dir.mkdir(mode=0o755)
        proc = PigeonProcess(workdir, 'user = "nobody"\n[admin]\nmetrics_listen = ""\n')
        # What the pigeon user could have left behind at its last run.
        (proc.data_dir / "queue").mkdir(parents=True)
        (proc.data_dir / "queue" / "evil").symlink_to(secret)
        (proc.data_dir / "mailboxes").symlink_to(system_dir)
        os.link(secret, proc.data_dir / "hardlink")
        with proc:
            # Listening comes just before the drop (app/lifecycle.py): wait for it.
            nobody = pwd.getpwnam("nobody").pw_uid
            assert wait_for(lambda: uids(proc.proc.pid)[1] == nobody), uids(proc.proc.pid)
        for path, mode in ((secret, 0o640), (system_dir, 0o755)):
            st = os.stat(path)
            assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, mode), path
        assert "not giving" in proc.log()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_a_data_dir_that_is_a_symlink_is_refused_as_root(tmp_path):
    import subprocess
    import sys

    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "data").symlink_to(real)
    config = tmp_path / "p.toml"
    config.write_text(
        f'user = "nobody"\ndata_dir = "{tmp_path / "data"}"\n'
        f'listen = ["127.0.0.1:{free_port()}"]\nsubmission_listen = []\n'
        "submissions_listen = []\nimap = { listen = [], tls_listen = [] }\n"
        '[admin]\nmetrics_listen = ""\n'
    )
    # (Before the fix it started, through the link: the timeout ends that run.)
    out = subprocess.run(
        [sys.executable, "-m", "pigeon", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 77, out.stderr
    assert (
        f"data_dir: {tmp_path / 'data'} is a symbolic link: name the real directory" in out.stderr
    )
    assert list(real.iterdir()) == []  # nothing written through the link
    assert os.stat(real).st_uid == 0
