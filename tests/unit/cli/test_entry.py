"""No command ends in a traceback for an ordinary condition, and none prints
terminal escape sequences it got from the network (pigeon.cli._entry)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pigeon.cli._entry import EscapingWriter, escape_controls
from pigeon.cli.main import main
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.store import QueueStore
from pigeon.testing.admin_backend import Backend

ESC = "\x1b]0;owned\x07\x1b[2J\x9b31m"


def config(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    path = tmp_path / "pigeon.toml"
    path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[queue]\nfsync = false\n[admin]\nmetrics_listen = ""\n'
    )
    return path


def pigeon(*argv: str, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PIGEON_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "pigeon", *argv],
        capture_output=kw.pop("capture_output", True),
        env=env,
        timeout=60,
        **kw,
    )


def closed_pipe_run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """Run with a stdout whose reader has gone (like `| head` after head exited)."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run(argv, stdout=w, stderr=subprocess.PIPE, timeout=60, **kw)
    finally:
        os.close(w)


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "pigeon", "queue", "-c", "{cfg}", "list"],
        ["-m", "pigeon", "check-config", "{cfg}"],
        ["-m", "pigeon", "sendmail", "-C", "{cfg}", "-bp"],
        ["-c", "from pigeon.cli.sendmail import main; main()", "-C", "{cfg}", "-bp"],
    ],
)
def test_closed_stdout_is_quiet(argv, tmp_path):
    cfg = config(tmp_path)
    with QueueStore(tmp_path / "data" / "queue", fsync=False) as store:
        sp = store.new_spool()
        sp.write(b"Subject: x\r\n\r\nx\r\n")
        store.commit(sp, Envelope(sp.queue_id, "a@example.test", [Recipient("b@example.org")]))
    done = closed_pipe_run([sys.executable, *[a.format(cfg=cfg) for a in argv]])
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 141


def test_big_listing_into_head(tmp_path):
    """The real thing: `pigeon queue list | head -1`, output far beyond a pipe buffer."""
    cfg = config(tmp_path)
    with QueueStore(tmp_path / "data" / "queue", fsync=False) as store:
        for i in range(1500):
            sp = store.new_spool()
            sp.write(b"Subject: x\r\n\r\nx\r\n")
            store.commit(
                sp,
                Envelope(
                    sp.queue_id, f"sender{i}@example.test", [Recipient(f"rcpt{i}@example.org")]
                ),
            )
    done = subprocess.run(
        f"{sys.executable} -m pigeon queue -c {cfg} list | head -1",
        shell=True,
        capture_output=True,
        timeout=60,
        executable="/bin/bash",
    )
    assert done.stdout.startswith(b"-Queue ID-")
    assert b"Traceback" not in done.stderr and b"Error" not in done.stderr, done.stderr


def test_user_add_without_a_terminal_points_to_password_stdin(tmp_path):
    cfg = config(tmp_path)
    done = pigeon(
        "user",
        "add",
        "alice@example.test",
        "-c",
        str(cfg),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # no controlling tty
    assert done.returncode == 64
    assert b"--password-stdin" in done.stderr and b"Traceback" not in done.stderr


def _read_until(fd: int, needle: bytes, timeout: float = 20.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


def test_ctrl_c_at_the_password_prompt(tmp_path):
    cfg = config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PIGEON_CONFIG"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: a real terminal session
        os.execve(
            sys.executable,
            [sys.executable, "-m", "pigeon", "user", "add", "alice@example.test", "-c", str(cfg)],
            env,
        )
    try:
        seen = _read_until(fd, b"New password:")
        assert b"New password:" in seen, seen
        os.write(fd, b"\x03")  # Ctrl-C: the tty sends SIGINT
        seen += _read_until(fd, b"\x00", timeout=10)  # everything until it exits
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert b"Traceback" not in seen and b"KeyboardInterrupt" not in seen, seen
    assert os.waitstatus_to_exitcode(status) == 130


def test_escape_controls():
    assert escape_controls("a\tb\nc") == "a\tb\nc"
    assert escape_controls("x\x1b[31my\r\x07\x7f\x9b") == "x\\x1b[31my\\r\\x07\\x7f\\x9b"


def test_escaping_writer_passes_text_through_and_escapes_controls():
    import io

    buf = io.StringIO()
    w = EscapingWriter(buf)
    print("hello\x1b[2J", "wörld", file=w)
    assert buf.getvalue() == "hello\\x1b[2J wörld\n"


def test_queue_show_and_list_escape_what_came_from_the_network(tmp_path, capsys):
    b = Backend(tmp_path)
    try:
        sp = b.store.new_spool()
        sp.write(f"Received: from {ESC}\r\nSubject: {ESC}\r\n\r\nhi\r\n".encode())
        env = Envelope(
            sp.queue_id,
            "a@example.test",
            [Recipient("b@example.org")],
            client_address="192.0.2.1",
            client_helo=ESC,
            size=40,
        )
        env.recipients[0].diagnostic = f"451 4.0.0 {ESC}"
        env.recipients[0].dsn_status = "4.0.0"
        env.recipients[0].remote_mta = ESC
        b.store.commit(sp, env)
        data = ["--data-dir", str(b.config.data_dir)]
        assert main(["queue", *data, "show", sp.queue_id]) == 0
        assert main(["queue", *data, "list"]) == 0
        assert main(["sendmail", "-C", "/nonexistent\x1b[2J.toml", "x@y.test"]) == 78
    finally:
        b.close()
    out = capsys.readouterr()
    for text in (out.out, out.err):
        assert not any(c in text for c in "\x1b\x07\x9b\r"), repr(text)
    assert "\\x1b]0;owned\\x07" in out.out and "\\x1b[2J" in out.err
