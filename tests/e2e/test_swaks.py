"""End to end with swaks (Debian package), as a new user would send a first message."""

from __future__ import annotations

import subprocess

import pytest

from pigeon.testing.live import maildir_messages, require_tool, wait_for

pytestmark = pytest.mark.e2e


def swaks(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            require_tool("swaks"),
            "--server",
            f"127.0.0.1:{port}",
            "--helo",
            "swaks.example",
            "--timeout",
            "10",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_swaks_first_message(pigeon):
    result = swaks(
        pigeon.port,
        "--to",
        "anyone@localhost",
        "--from",
        "me@example.org",
        "--header",
        "Subject: first message",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Ok: queued as" in result.stdout
    files = wait_for(lambda: maildir_messages(pigeon.data_dir, "anyone@localhost"))
    assert len(files) == 1
    assert b"Subject: first message" in files[0].read_bytes()


def test_swaks_pipelining_and_chunking(pigeon):
    result = swaks(pigeon.port, "--to", "pipe@localhost", "--pipeline")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Ok: queued as" in result.stdout
    assert wait_for(lambda: maildir_messages(pigeon.data_dir, "pipe@localhost"))


def test_swaks_relay_refused(pigeon):
    result = swaks(pigeon.port, "--to", "someone@elsewhere.example", "--quit-after", "RCPT")
    assert "554 5.7.1" in result.stdout, result.stdout


def test_swaks_unknown_mailbox(pigeon):
    result = swaks(pigeon.port, "--to", "carol@example.test", "--quit-after", "RCPT")
    assert "550 5.1.1" in result.stdout, result.stdout


def test_swaks_oversized_message_refused(pigeon_factory):
    server = pigeon_factory("[limits]\nmessage_size = 2000\n")
    result = swaks(
        server.port, "--to", "big@localhost", "--body", "x" * 80 + "\n" * 1 + ("y" * 70 + "\n") * 60
    )
    assert "552 5.3.4" in result.stdout, result.stdout
    assert not maildir_messages(server.data_dir, "big@localhost")
