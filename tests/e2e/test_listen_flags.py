"""`pigeon serve` moves every listener with a flag, and a bind error says which key and flag.

The production story: a second instance started beside the first with only
`--listen` failed on the submission port, with no way to move it but a new
file. Now --submission-listen, --submissions-listen, --pop3-listen,
--pop3-tls-listen and --metrics-listen exist ("" turns a role off), and every bind error names the configuration
key and the flag.
"""

from __future__ import annotations

import smtplib
import socket
import subprocess
import sys

import pytest

from pigeon.testing.live import PigeonProcess, free_port, maildir_messages, wait_for

pytestmark = pytest.mark.e2e


def occupied() -> socket.socket:
    """A loopback port that something else is listening on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


def serve(tmp_path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pigeon",
            "serve",
            "--hostname",
            "second.test",
            "--data-dir",
            str(tmp_path / "second"),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )


def test_second_instance_beside_the_first(pigeon_factory, tmp_path):
    first = pigeon_factory('[domains."localhost"]\n')
    port, submission = free_port(), free_port()
    # Same file, every address moved or turned off by flags.
    second = PigeonProcess(
        tmp_path / "second",
        "",
        port=port,
        extra_args=[
            "--config",
            str(first.config_path),
            "--listen",
            f"127.0.0.1:{port}",
            "--submission-listen",
            f"127.0.0.1:{submission}",
            "--submissions-listen",
            "",
            "--pop3-listen",
            "",
            "--pop3-tls-listen",
            "",
            "--imap-listen",
            "",
            "--imaps-listen",
            "",
            "--metrics-listen",
            "",
            "--data-dir",
            str(tmp_path / "second" / "data"),
        ],
    )
    # PigeonProcess passes its own --config first; ours (later) wins, as argparse does.
    with second:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.sendmail("a@example.org", ["both@localhost"], b"Subject: two\r\n\r\nhi\r\n")
        assert wait_for(lambda: maildir_messages(tmp_path / "second" / "data", "both@localhost"))
        assert maildir_messages(first.data_dir, "both@localhost") == []
        with smtplib.SMTP("127.0.0.1", submission, timeout=10) as s:
            assert s.ehlo("c.example")[0] == 250 and s.has_extn("starttls")
        # The log writer works in batches: wait for the line, not for speed.
        assert wait_for(lambda: f"listening on 127.0.0.1:{submission}" in second.log())
        log = second.log()
        assert f"listening on 127.0.0.1:{submission} (submission)" in log
        assert "(submissions)" not in log  # turned off
        assert "(pop3)" not in log and "(pop3s)" not in log  # turned off
        assert "metrics" not in log  # turned off: no endpoint, no bind error
    assert first.proc.poll() is None  # the first one never noticed


def test_bind_errors_name_the_key_and_the_flag(tmp_path):
    taken_submission, taken_metrics = occupied(), occupied()
    with taken_submission, taken_metrics:
        sub_port = taken_submission.getsockname()[1]
        metrics_port = taken_metrics.getsockname()[1]
        done = serve(
            tmp_path,
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--submission-listen",
            f"127.0.0.1:{sub_port}",
            "--submissions-listen",
            "",
            "--metrics-listen",
            f"127.0.0.1:{metrics_port}",
        )
    assert done.returncode == 69, done.stderr
    assert (
        f"cannot listen on 127.0.0.1:{sub_port} (submission): Address already in use "
        f"(set by submission_listen in the configuration or --submission-listen; "
        f'submission_listen = [] or --submission-listen "" turns the role off)'
    ) in done.stderr
    assert (
        f"metrics endpoint 127.0.0.1:{metrics_port} not started: Address already in use "
        "(set by [admin] metrics_listen in the configuration or --metrics-listen; "
        '"" turns it off)'
    ) in done.stderr


def test_smtp_bind_error_with_workers(tmp_path):
    config = tmp_path / "p.toml"
    config.write_text("workers = 2\n")
    with occupied() as taken:
        port = taken.getsockname()[1]
        done = serve(
            tmp_path,
            "--config",
            str(config),
            "--listen",
            f"127.0.0.1:{port}",
            "--submission-listen",
            "",
            "--submissions-listen",
            "",
            "--metrics-listen",
            "",
        )
    assert done.returncode == 69, done.stderr
    assert (
        f"cannot listen on 127.0.0.1:{port} (smtp): Address already in use "
        "(set by listen in the configuration or --listen)"
    ) in done.stderr
