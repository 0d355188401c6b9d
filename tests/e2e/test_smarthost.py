"""Relaying through a smarthost with AUTH over STARTTLS: pigeon to pigeon.

Server B is a pigeon with a submission listener (STARTTLS, AUTH required)
and one account; server A sends everything through B
(`delivery.relay_host`, `relay_user`, `relay_password_file`). A message
submitted to A must arrive in B's Maildir, having been authenticated
(ESMTPSA in B's Received: field). With a wrong password A defers the
message instead of bouncing it (like Postfix's smtp_sasl_auth_soft_bounce).
"""

from __future__ import annotations

import smtplib

import pytest
from secure_helpers import PASSWORD, USER, add_user

from pigeon.testing.live import maildir_messages, wait_for

pytestmark = pytest.mark.e2e


def a_config(b, password_file) -> str:
    return (
        f'relay_networks = ["127.0.0.0/8"]\n[domains."localhost"]\n[delivery]\n'
        f'relay_host = "[127.0.0.1]:{b.submission_port}"\nrelay_user = "{USER}"\n'
        f'relay_password_file = "{password_file}"\n[queue]\nrun_interval = 1.0\n'
        f"min_backoff = 1.0\nmax_backoff = 2.0\n"
    )


def send(a, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", a.port, timeout=10) as s:
        s.sendmail(
            USER,
            ["bob@example.test"],
            f"From: {USER}\r\nSubject: {subject}\r\n\r\nvia the smarthost\r\n".encode(),
        )


def test_relay_through_smarthost_with_auth(pigeon_factory, tmp_path):
    b = pigeon_factory(
        '[domains."example.test"]\nmailboxes = ["alice", "bob"]\n', hostname="smarthost.test"
    )  # another name: not a loop
    add_user(b)
    password_file = tmp_path / "relay-password"
    password_file.write_text(PASSWORD + "\n")
    a = pigeon_factory(a_config(b, password_file))
    send(a, "smarthost ok")
    files = wait_for(lambda: maildir_messages(b.data_dir, "bob@example.test"), timeout=20)
    assert files, a.log()
    content = files[0].read_bytes()
    assert b"with ESMTPSA" in content and b"smarthost ok" in content
    assert wait_for(lambda: "status=sent" in a.log() and "tls=encrypted TLSv1." in a.log()), a.log()


def test_wrong_smarthost_password_defers(pigeon_factory, tmp_path):
    b = pigeon_factory(
        '[domains."example.test"]\nmailboxes = ["alice", "bob"]\n', hostname="smarthost.test"
    )  # another name: not a loop
    add_user(b)
    password_file = tmp_path / "relay-password"
    password_file.write_text("not the password\n")
    a = pigeon_factory(a_config(b, password_file))
    send(a, "smarthost refused")
    assert wait_for(lambda: "status=deferred" in a.log(), timeout=20), a.log()
    assert "SASL authentication failed" in a.log() or "535" in a.log()
    assert "status=bounced" not in a.log()
    assert not maildir_messages(b.data_dir, "bob@example.test")


def test_smarthost_login_goes_to_the_smarthost_only(pigeon_factory, tmp_path):
    """The relay login belongs to host AND port: a [transports] route to
    another service on the same address gets no credentials (it offers no
    AUTH, so sending them would also have deferred the route)."""
    b = pigeon_factory(
        '[domains."example.test"]\nmailboxes = ["alice", "bob"]\n', hostname="smarthost.test"
    )
    add_user(b)
    c = pigeon_factory('[domains."other.test"]\n', hostname="other.test")  # port 25 role: no AUTH
    password_file = tmp_path / "relay-password"
    password_file.write_text(PASSWORD + "\n")
    a = pigeon_factory(
        a_config(b, password_file) + f'[transports]\n"other.test" = "smtp:[127.0.0.1]:{c.port}"\n'
    )
    with smtplib.SMTP("127.0.0.1", a.port, timeout=10) as s:
        s.sendmail(
            USER,
            ["bob@example.test", "x@other.test"],
            f"From: {USER}\r\nSubject: two routes\r\n\r\nhello\r\n".encode(),
        )
    via_b = wait_for(lambda: maildir_messages(b.data_dir, "bob@example.test"), timeout=20)
    via_c = wait_for(lambda: maildir_messages(c.data_dir, "x@other.test"), timeout=20)
    assert via_b and via_c, a.log()
    assert b"with ESMTPSA" in via_b[0].read_bytes()  # logged in at the smarthost
    assert b"with ESMTPS " in via_c[0].read_bytes()  # TLS, no login at the other service
    assert "AUTH" not in c.log() and "status=deferred" not in a.log()
