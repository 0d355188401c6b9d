"""docs/install.md, followed as far as a test can, and local users (item 2, S8, S12).

Everything happens in a private mount namespace (pigeon.testing.sandbox):
/etc is an overlay there, so the system user, an ordinary user and
/etc/pigeon/pigeon.toml exist only for this test, and the venv's sendmail
is bind-mounted over /usr/sbin/sendmail. The configuration points at a
temporary data directory and a loopback port. `pigeon serve` runs with no
-c as the pigeon user (like the systemd unit); then root's and an ordinary
user's commands, run from another directory, must reach that server.
Skipped when not root; under CI=true it runs (and fails if it cannot).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from pigeon.testing.live import free_port, maildir_messages, wait_for
from pigeon.testing.sandbox import Sandbox

pytestmark = pytest.mark.e2e

BIN = Path(sys.prefix) / "bin"
PIGEON = str(BIN / "pigeon")
SYSTEM_SENDMAIL = "/usr/sbin/sendmail"
SERVER_USER = "pigeon"
LOCAL_USER = "alice-e2e"


class Installed:
    def __init__(
        self, sandbox: Sandbox, data: Path, elsewhere: Path, sendmail: str, server
    ) -> None:
        self.sb, self.data, self.elsewhere, self.sendmail, self.server = (
            sandbox,
            data,
            elsewhere,
            sendmail,
            server,
        )

    def run(self, *argv: str, user: str | None = None, stdin: bytes | None = None):
        return self.sb.run(list(argv), user=user, cwd=str(self.elsewhere), input=stdin)

    def uid(self, name: str) -> int:
        done = self.sb.run(["id", "-u", name])
        return int(done.stdout)

    def delivered(self, address: str, marker: bytes) -> bytes | None:
        for path in maildir_messages(self.data, address):
            data = path.read_bytes()
            if marker in data:
                return data
        return None


@pytest.fixture(scope="module")
def installed():
    tmp = Path(tempfile.mkdtemp(prefix="pigeon-install-"))
    os.chmod(tmp, 0o755)  # /var/lib must be traversable: so must this
    data, elsewhere = tmp / "var-lib-pigeon", tmp / "somewhere-else"
    elsewhere.mkdir()
    # A planted configuration in the directory the commands run from: never read.
    (elsewhere / "pigeon.toml").write_text(f'data_dir = "{tmp / "planted"}"\n')
    bind = {}
    sendmail = str(BIN / "sendmail")
    if os.path.exists(SYSTEM_SENDMAIL):  # step 5: /usr/sbin/sendmail -> the venv's
        bind[str(BIN / "sendmail")] = SYSTEM_SENDMAIL
        sendmail = SYSTEM_SENDMAIL
    sb = Sandbox(bind=bind).start()
    try:
        # Step 1: the system user.
        done = sb.run(
            [
                "useradd",
                "--system",
                "--home-dir",
                "/var/lib/pigeon",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ]
        )
        assert done.returncode in (0, 9), done.stderr  # 9: it exists already
        assert sb.run(["useradd", "--no-create-home", LOCAL_USER]).returncode == 0
        # Step 3: the configuration, checked.
        port = free_port()
        config = (
            f'hostname = "mx.example.test"\ndata_dir = "{data}"\n'
            f'listen = ["127.0.0.1:{port}"]\nsubmission_listen = []\n'
            f'submissions_listen = []\n[domains."example.test"]\n'
            f'[queue]\nrun_interval = 1.0\n[admin]\nmetrics_listen = ""\n'
        )
        done = sb.run(
            [
                "sh",
                "-ec",
                "install -d -m 0755 /etc/pigeon\n"
                "install -m 0644 /dev/stdin /etc/pigeon/pigeon.toml",
            ],
            input=config.encode(),
        )
        assert done.returncode == 0, done.stderr
        done = sb.run([PIGEON, "check-config"], cwd=str(elsewhere))
        assert done.returncode == 0 and b"ok: /etc/pigeon/pigeon.toml" in done.stdout, done
        # Step 4: the data directory, and an account added before the first start.
        done = sb.run(
            ["install", "-d", "-o", SERVER_USER, "-g", SERVER_USER, "-m", "0711", str(data)]
        )
        assert done.returncode == 0, done.stderr
        done = sb.run(
            [PIGEON, "user", "add", "carol@example.test", "--password-stdin"],
            cwd=str(elsewhere),
            input=b"correct horse battery\n",
        )
        assert done.returncode == 0, done.stderr
        # Step 6, as the unit does it: `pigeon serve`, no --config, as the pigeon user.
        log = open(tmp / "serve.log", "wb")
        server = sb.popen([PIGEON, "serve"], user=SERVER_USER, cwd="/", stdout=log, stderr=log)
        up = wait_for(
            lambda: (
                server.poll() is not None
                or sb.run([PIGEON, "status"], cwd=str(elsewhere)).returncode == 0
            ),
            timeout=30,
        )
        assert up and server.poll() is None, (tmp / "serve.log").read_text()
        yield Installed(sb, data, elsewhere, sendmail, server)
    finally:
        sb.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_root_commands_from_elsewhere_reach_the_running_server(installed):
    i = installed
    status = i.run(PIGEON, "status")
    assert status.returncode == 0, status.stderr
    assert f"pigeon is running (pid {i.server.pid}".encode() in status.stdout
    msg = b"To: bob@example.test\nSubject: install-root\n\nfrom cron\n"
    done = i.run(i.sendmail, "-t", "-i", stdin=msg)
    assert done.returncode == 0, done.stderr
    data = wait_for(lambda: i.delivered("bob@example.test", b"install-root"), timeout=30)
    assert data is not None
    assert b"Return-Path: <root@example.test>" in data and b"(uid 0)" in data
    listing = i.run(PIGEON, "queue", "list")
    assert listing.returncode == 0 and b"not running" not in listing.stderr, listing.stderr
    # Nothing was created where the commands ran, nor where the planted file points.
    assert sorted(p.name for p in i.elsewhere.iterdir()) == ["pigeon.toml"]
    assert not (i.elsewhere.parent / "planted").exists()


def test_files_written_by_root_belong_to_the_server(installed):
    pigeon_uid = installed.uid(SERVER_USER)
    wrong = [p for p in installed.data.rglob("*") if p.lstat().st_uid != pigeon_uid]
    assert wrong == []
    assert (installed.data / "accounts.db").exists()
    assert oct(installed.data.stat().st_mode & 0o777) == oct(0o711)


def test_an_ordinary_user_sends_as_itself(installed):
    i = installed
    alice = i.uid(LOCAL_USER)
    msg = b"To: bob@example.test\nSubject: install-alice\n\nhello\n"
    done = i.run(i.sendmail, "-t", "-i", "-f", "ceo@example.test", user=LOCAL_USER, stdin=msg)
    assert done.returncode == 0, done.stderr
    data = wait_for(lambda: i.delivered("bob@example.test", b"install-alice"), timeout=30)
    assert data is not None
    assert f"Return-Path: <{LOCAL_USER}@example.test>".encode() in data
    assert f"From: {LOCAL_USER}@example.test".encode() in data
    assert f"Received: from local user (uid {alice})".encode() in data
    assert b"ceo@" not in data


def test_an_ordinary_user_speaks_smtp_with_sendmail_bs(installed):
    i = installed
    script = (
        b"EHLO localhost\r\nMAIL FROM:<x@example.test>\r\nRCPT TO:<bob@example.test>\r\n"
        b"DATA\r\nSubject: install-bs\r\n\r\nhi\r\n.\r\nQUIT\r\n"
    )
    done = i.run(i.sendmail, "-bs", user=LOCAL_USER, stdin=script)
    assert done.returncode == 0 and b"250 2.0.0 Ok: queued as " in done.stdout, done
    data = wait_for(lambda: i.delivered("bob@example.test", b"install-bs"), timeout=30)
    assert data is not None and f"<{LOCAL_USER}@example.test>".encode() in data


def test_an_ordinary_user_may_not_run_the_queue(installed):
    for argv in ((PIGEON, "queue", "list"), (PIGEON, "status"), (PIGEON, "queue", "flush")):
        done = installed.run(*argv, user=LOCAL_USER)
        assert done.returncode == 77, (argv, done)
        assert b"Traceback" not in done.stderr and b"permission denied" in done.stderr


def test_with_the_server_stopped_an_ordinary_user_is_told_to_retry(installed):
    """Last: it stops the server."""
    i = installed
    i.server.terminate()
    assert i.server.wait(60) == 0
    done = i.run(i.sendmail, "bob@example.test", user=LOCAL_USER, stdin=b"Subject: x\n\nx\n")
    assert done.returncode == 75 and b"NOT queued" in done.stderr, done
    status = i.run(PIGEON, "status")
    assert status.returncode == 3 and b"pigeon is not running" in status.stdout
    for argv in ((PIGEON, "status"), (PIGEON, "queue", "list")):  # the store is private too
        done = i.run(*argv, user=LOCAL_USER)
        assert done.returncode == 77 and b"Traceback" not in done.stderr, done


def test_install_user_name_matches_the_unit():
    unit = (Path(__file__).resolve().parents[2] / "contrib" / "pigeon.service").read_text()
    assert f"User={SERVER_USER}\n" in unit
