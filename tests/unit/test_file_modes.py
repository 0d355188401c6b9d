"""Every file pigeon creates has the mode docs/security.md gives it, whatever the umask.

Each creator runs under umask 000, the most permissive an operator could
start pigeon with (`pigeon serve` tightens it to 077 itself, but the tools -
`pigeon user`, `sendmail`, `pigeon queue` - do not, and the mode must not
depend on it anyway).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path

import pytest

from pigeon.admin.control import ControlServer
from pigeon.admin.pidfile import PidFile
from pigeon.app.datalock import DataDirLock
from pigeon.auth.accounts import AccountStore
from pigeon.config.schema import LogConfig
from pigeon.delivery.content import FileMessage
from pigeon.delivery.maildir import MaildirJob, deliver_batch
from pigeon.net.tls import generate_self_signed
from pigeon.obs.logsetup import flush_logs, setup_logging
from pigeon.policy.abusestate import AbuseState
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.spool import SPILL_THRESHOLD
from pigeon.queue.store import QueueStore


@pytest.fixture(autouse=True)
def open_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def modes(root: Path) -> dict[str, int]:
    """Every file and directory under `root` (itself included) -> its mode."""
    out = {".": mode(root)}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = mode(path)
    return out


@pytest.mark.usefixtures("restore_logging")
def test_log_file_0600_also_after_rotation(tmp_path):
    log_file = tmp_path / "mail.log"
    setup_logging(LogConfig(file=log_file), background=False)
    logging.getLogger("pigeon.mail").info("from=<alice@example.test>")
    assert mode(log_file) == 0o600
    log_file.rename(tmp_path / "mail.log.1")  # logrotate
    logging.getLogger("pigeon.mail").info("to=<bob@example.test>")
    flush_logs()
    assert "bob@example.test" in log_file.read_text()
    assert mode(log_file) == 0o600


@pytest.mark.usefixtures("restore_logging")
def test_an_existing_log_file_keeps_the_administrators_mode(tmp_path):
    log_file = tmp_path / "mail.log"
    log_file.touch()
    log_file.chmod(0o640)
    setup_logging(LogConfig(file=log_file), background=False)
    assert mode(log_file) == 0o640


def test_pid_file_0644(tmp_path):
    PidFile(tmp_path / "pigeon.pid").write()
    assert mode(tmp_path / "pigeon.pid") == 0o644


def test_data_directory_lock_0600(tmp_path):
    lock = DataDirLock(tmp_path)
    lock.acquire()
    lock.release()
    assert mode(tmp_path / "pigeon.lock") == 0o600


def test_self_signed_certificate(tmp_path):
    tls = tmp_path / "tls"
    generate_self_signed(tls / "cert.pem", tls / "key.pem", "mx.example.test")
    assert modes(tls) == {".": 0o700, "key.pem": 0o600, "cert.pem": 0o644}


def test_queue_directories_database_and_spool_files(tmp_path):
    data = tmp_path / "data"
    store = QueueStore(data / "queue", fsync=False)
    store.open()
    try:
        spool = store.new_spool()
        spool.write(b"x" * (SPILL_THRESHOLD + 1))  # spills to a file in tmp/
        spilled = modes(data / "queue")
        store.commit(
            spool,
            Envelope(
                spool.queue_id,
                "a@example.test",
                [Recipient("b@example.test")],
                size=SPILL_THRESHOLD + 1,
            ),
        )
        small = store.new_spool()
        small.write(b"Subject: small\r\n\r\nhi\r\n")
        store.commit(
            small,
            Envelope(small.queue_id, "a@example.test", [Recipient("b@example.test")], size=20),
        )
        found = modes(data)
    finally:
        store.close()
    assert found.pop(".") == 0o700
    assert [m for name, m in spilled.items() if name.startswith("tmp/")] == [0o600]
    assert {name: m for name, m in found.items() if m != 0o600} == {
        "queue": 0o700,
        "queue/tmp": 0o700,
        "queue/msg": 0o700,
    }
    assert {
        "queue/queue.db",
        "queue/queue.db-wal",
        "queue/queue.lock",
        f"queue/msg/{spool.queue_id}",
        f"queue/msg/{small.queue_id}",
    } <= set(found)


def test_account_database(tmp_path):
    store = AccountStore.in_data_dir(tmp_path / "data").open()
    try:
        store.add("alice", "correct horse battery staple", ("alice@example.test",))
        found = modes(tmp_path / "data")
    finally:
        store.close()
    assert found.pop(".") == 0o700
    assert "accounts.db" in found
    assert set(found.values()) == {0o600}, found


def test_abuse_controls_state(tmp_path):
    (tmp_path / "data").mkdir(mode=0o700)
    state = AbuseState.in_data_dir(tmp_path / "data").open()
    try:
        state.table("bucket").put("conn:192.0.2.1", (1.0, 2.0, 0.0))
        state.flush()
        found = modes(tmp_path / "data")
    finally:
        state.close()
    assert found.pop(".") == 0o700
    assert "abuse.db" in found
    assert set(found.values()) == {0o600}, found


def test_control_socket_0600(tmp_path):
    server = ControlServer(tmp_path / "control.sock", {})

    async def check() -> int:
        await server.start()
        try:
            return mode(tmp_path / "control.sock")
        finally:
            await server.close()

    assert asyncio.run(check()) == 0o600


def test_maildir_directories_and_messages(tmp_path):
    source = tmp_path / "content"
    source.write_bytes(b"Subject: hi\r\n\r\nhello\r\n")
    box = tmp_path / "mailboxes" / "example.test" / "alice"
    ((_, _, err),) = deliver_batch([MaildirJob(box, FileMessage(source), "a@example.test")])
    assert err is None
    (path,) = (box / "new").iterdir()
    found = modes(tmp_path / "mailboxes")
    assert found.pop(str(path.relative_to(tmp_path / "mailboxes"))) == 0o600
    assert set(found.values()) == {0o700}, found


def test_mailbox_tree_and_its_format_stamp_are_private(tmp_path):
    from pigeon.mailstore.layout import STAMP, open_mailboxes

    open_mailboxes(tmp_path / "mailboxes")
    assert modes(tmp_path / "mailboxes") == {".": 0o700, STAMP: 0o600}


def test_api_tokens(tmp_path):
    from pigeon.web.tokens import TokenStore

    (tmp_path / "data").mkdir(mode=0o700)
    old = os.umask(0o022)  # the CLI does not set its umask
    try:
        store = TokenStore.in_data_dir(tmp_path / "data")
        store.add("ci", ("send",), 1.0)
        store.add("ops", ("admin",), 2.0)
        store.remove("ci")
    finally:
        os.umask(old)
    found = modes(tmp_path / "data")
    assert found.pop(".") == 0o700
    assert found == {"api-tokens.json": 0o600}
