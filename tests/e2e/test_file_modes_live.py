"""A real `pigeon serve` started under umask 000: every file it creates has its documented mode.

The production story: the log file (senders, recipients, login names) was
created world-readable, because it was opened before the umask was tightened.
docs/security.md lists every file and its mode.
"""

from __future__ import annotations

import os
import smtplib
import stat

import pytest

from pigeon.testing.live import PigeonProcess, maildir_messages, wait_for

pytestmark = pytest.mark.e2e

#: docs/security.md, "Files and their modes".
PRIVATE_FILE, PRIVATE_DIR, PUBLIC_FILE = 0o600, 0o700, 0o644
PUBLIC = {"pigeon.pid", "tls/selfsigned-cert.pem"}
#: data_dir is searchable (not listable) by local users, so that their
#: sendmail reaches the submit socket (docs/security.md).
SPECIAL = {".": 0o711, "submit.sock": 0o666}


def test_every_file_has_its_mode_under_a_permissive_umask(tmp_path):
    proc = PigeonProcess(
        tmp_path / "w", f'[log]\nfile = "{tmp_path / "mail.log"}"\n[admin]\nmetrics_listen = ""\n'
    )
    old = os.umask(0)  # inherited by the server
    try:
        proc.start()
    finally:
        os.umask(old)
    with proc:
        with smtplib.SMTP("127.0.0.1", proc.port, timeout=10) as s:
            s.sendmail("a@example.org", ["alice@localhost"], b"Subject: modes\r\n\r\nhi\r\n")
        assert wait_for(lambda: maildir_messages(proc.data_dir, "alice@localhost"))
        assert stat.S_IMODE(os.stat(tmp_path / "mail.log").st_mode) == PRIVATE_FILE
        # made just after the console's listener is bound (app/console.py)
        assert wait_for(lambda: (proc.data_dir / "console-admins.json").exists())
        found = {}
        for path in [proc.data_dir, *proc.data_dir.rglob("*")]:
            name = str(path.relative_to(proc.data_dir))
            st = os.lstat(path)
            if name in SPECIAL:
                wanted = SPECIAL[name]
            elif stat.S_ISDIR(st.st_mode):
                wanted = PRIVATE_DIR
            else:
                wanted = PUBLIC_FILE if name in PUBLIC else PRIVATE_FILE
            found[name] = (stat.S_IMODE(st.st_mode), wanted)
        wrong = {name: oct(m) for name, (m, wanted) in found.items() if m != wanted}
        assert wrong == {}, wrong
        # The files the table names are all there.
        assert {
            "pigeon.pid",
            "pigeon.lock",
            "control.sock",
            "submit.sock",
            "accounts.db",
            "console-admins.json",  # the first admin, made at the first start
            "abuse.db",
            "queue/queue.db",
            "tls/selfsigned-key.pem",
            "tls/selfsigned-cert.pem",
        } <= set(found)
