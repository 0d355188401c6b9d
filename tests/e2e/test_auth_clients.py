"""Submission with real clients: swaks (--tls, --tlsc, --auth PLAIN/LOGIN), msmtp, curl.

Each sends through the submission (587-style, STARTTLS) or submissions
(465-style, implicit TLS) listener with the account made by `pigeon user add`,
and the message must reach the recipient's Maildir with `with ESMTPSA`.
"""

from __future__ import annotations

import subprocess

import pytest
from secure_helpers import CONFIG, PASSWORD, USER, message

from pigeon.testing.live import maildir_messages, require_tool, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(pigeon_factory, tmp_path):
    proc = pigeon_factory(CONFIG)
    # As a new user would: the command line, password from stdin.
    out = subprocess.run(
        [*_pigeon(), "user", "--config", str(proc.config_path), "add", USER, "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return proc


def _pigeon() -> list[str]:
    import sys

    return [sys.executable, "-m", "pigeon"]


def _delivered(server, rcpt: str, subject: str) -> bytes:
    def find():
        for path in maildir_messages(server.data_dir, rcpt):
            data = path.read_bytes()
            if subject.encode() in data:
                return data
        return None

    data = wait_for(find)
    assert data is not None, f"{subject!r} not delivered to {rcpt}"
    return data


def swaks(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            require_tool("swaks"),
            "--server",
            f"127.0.0.1:{port}",
            "--helo",
            "swaks.example",
            "--timeout",
            "15",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_starttls_auth(server, mech):
    subject = f"swaks starttls {mech}"
    r = swaks(
        server.submission_port,
        "--tls",
        "--auth",
        mech,
        "--auth-user",
        USER,
        "--auth-password",
        PASSWORD,
        "--from",
        USER,
        "--to",
        "bob@example.test",
        "--header",
        f"Subject: {subject}",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "235 2.7.0 Authentication successful" in r.stdout
    assert b"with ESMTPSA (using TLSv1" in _delivered(server, "bob@example.test", subject)


def test_swaks_implicit_tls(server):
    r = swaks(
        server.submissions_port,
        "--tlsc",
        "--auth",
        "PLAIN",
        "--auth-user",
        USER,
        "--auth-password",
        PASSWORD,
        "--from",
        USER,
        "--to",
        "bob@example.test",
        "--header",
        "Subject: swaks tlsc",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    _delivered(server, "bob@example.test", "swaks tlsc")


def test_swaks_wrong_password_and_plaintext(server):
    r = swaks(
        server.submission_port,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        USER,
        "--auth-password",
        "wrong",
        "--from",
        USER,
        "--to",
        "bob@example.test",
    )
    assert r.returncode != 0 and "535 5.7.8" in r.stdout, r.stdout
    # Without --tls swaks cannot even try: AUTH is not advertised in plaintext.
    r = swaks(
        server.submission_port,
        "--auth",
        "PLAIN",
        "--auth-user",
        USER,
        "--auth-password",
        PASSWORD,
        "--from",
        USER,
        "--to",
        "bob@example.test",
    )
    assert r.returncode != 0
    assert "235" not in r.stdout


def _msmtp(
    server, tmp_path, port: int, starttls: bool, method: str, subject: str, password: str = PASSWORD
) -> subprocess.CompletedProcess:
    msmtp = require_tool("msmtp")
    rc = tmp_path / f"msmtprc-{port}-{method}"
    rc.write_text(
        f"account default\nhost 127.0.0.1\nport {port}\nfrom {USER}\n"
        f"tls on\ntls_starttls {'on' if starttls else 'off'}\ntls_certcheck off\n"
        f"auth {method}\nuser {USER}\npassword {password}\n"
        f"logfile {tmp_path / 'msmtp.log'}\n"
    )
    rc.chmod(0o600)
    return subprocess.run(
        [msmtp, "-C", str(rc), "bob@example.test"],
        input=message(USER, "bob@example.test", subject),
        capture_output=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "port_kind, method",
    [
        ("submission", "plain"),
        ("submission", "scram-sha-256"),
        ("submissions", "login"),
        ("submission", "on"),
    ],
)
def test_msmtp(server, tmp_path, port_kind, method):
    port = server.submission_port if port_kind == "submission" else server.submissions_port
    subject = f"msmtp {port_kind} {method}"
    r = _msmtp(server, tmp_path, port, port_kind == "submission", method, subject)
    assert r.returncode == 0, r.stderr.decode()
    assert b"with ESMTPSA" in _delivered(server, "bob@example.test", subject)


def test_msmtp_wrong_password(server, tmp_path):
    r = _msmtp(server, tmp_path, server.submission_port, True, "plain", "nope", password="bad")
    assert r.returncode != 0
    assert b"535" in r.stderr or b"authentication failed" in r.stderr.lower(), r.stderr


@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_curl(server, tmp_path, scheme):
    curl = require_tool("curl")
    port = server.submission_port if scheme == "smtp" else server.submissions_port
    subject = f"curl {scheme}"
    mail = tmp_path / f"{scheme}.eml"
    mail.write_bytes(message(USER, "bob@example.test", subject))
    r = subprocess.run(
        [
            curl,
            "-sS",
            "--url",
            f"{scheme}://127.0.0.1:{port}",
            "--ssl-reqd",
            "--insecure",
            "--mail-from",
            USER,
            "--mail-rcpt",
            "bob@example.test",
            "--user",
            f"{USER}:{PASSWORD}",
            "--upload-file",
            str(mail),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert b"with ESMTPSA" in _delivered(server, "bob@example.test", subject)
