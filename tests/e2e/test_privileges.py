"""Started as root with `user` set, pigeon binds, then runs as that user.

The data directory ends up owned by the user with mode 0711 (private
inside; searchable for the submit socket), the process's
real and effective uid are the user's, and mail still flows (the queue and
the Maildir are writable by it).
"""
from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import tempfile
from pathlib import Path

import pytest

from pigeon.testing.live import PigeonProcess, maildir_messages, wait_for

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
            assert uids(proc.proc.pid) == [nobody.pw_uid] * 4
            st = os.stat(proc.data_dir)
            # 0711: searchable, so local users reach the submit socket; nothing
            # in it is readable by them (pigeon.admin.submitsock).
            assert st.st_uid == nobody.pw_uid and (st.st_mode & 0o777) == 0o711
            assert (proc.data_dir / "queue").stat().st_mode & 0o077 == 0
            with smtplib.SMTP("127.0.0.1", proc.port, timeout=10) as s:
                s.sendmail("a@example.org", ["dropped@localhost"], b"Subject: x\r\n\r\nhi\r\n")
            files = wait_for(lambda: maildir_messages(proc.data_dir, "dropped@localhost"))
            assert files and os.stat(files[0]).st_uid == nobody.pw_uid
            assert os.stat(files[0]).st_mode & 0o077 == 0          # private
            assert "dropped privileges: now running as nobody" in proc.log()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_unknown_user_is_a_configuration_error(tmp_path):
    import subprocess
    import sys
    config = tmp_path / "p.toml"
    config.write_text('user = "no-such-user-pigeon"\n')
    out = subprocess.run([sys.executable, "-m", "pigeon", "check-config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 78
    assert 'user: no such user "no-such-user-pigeon"' in out.stderr
