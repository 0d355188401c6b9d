"""Run a full-screen program (neomutt) in a pseudo-terminal and keep what it drew.

    status, screen = run_in_pty(["neomutt", ...], timeout=60, env=env, cwd=workdir)

Contract:
  * The program gets a new session and a pty of `rows` x `columns` as its
    stdin, stdout and stderr (TERM=xterm), so curses programs run as they
    would in a terminal; nobody types: the program must be told what to do
    by its arguments (neomutt: `-e 'push ...'`) and must end by itself.
  * Returns (exit status, screen output as text with the terminal escape
    sequences removed); status None when it ran over `timeout` seconds and
    was killed (the whole session). Reading is bounded by `max_bytes`.
  * Never used by production code.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time

__all__ = ["run_in_pty"]

#: CSI sequences (ESC [ ... final byte), OSC (ESC ] ... BEL) and two-byte escapes.
_ESCAPES = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-Za-z]|\x1b[=>78]")


def run_in_pty(
    argv: list[str],
    *,
    timeout: float,
    env: dict[str, str],
    cwd: os.PathLike | str,
    rows: int = 50,
    columns: int = 200,
    max_bytes: int = 16 << 20,
) -> tuple[int | None, str]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    try:
        proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=dict(env, TERM="xterm", COLUMNS=str(columns), LINES=str(rows)),
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    status: int | None = None
    try:
        while time.monotonic() < deadline and len(out) < max_bytes:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the program closed the terminal
                    chunk = b""
                if chunk:
                    out += chunk
                    continue
                break
            if proc.poll() is not None:
                break
        try:
            status = proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            status = None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        os.close(master)
    screen = _ESCAPES.sub(b"", bytes(out)).decode("utf-8", "replace")
    return status, screen
