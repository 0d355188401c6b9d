"""Postfix's smtp-sink as a receiving MTA for tests, on any loopback address.

Contract:
  * `SmtpSink(address, port, extra_args=...)` runs `smtp-sink` (Debian
    package postfix) bound to `address:port` (an address of 127.0.0.0/8),
    dumping every accepted transaction to a file of its own temp dir, until
    `stop()`. Options such as `-f RCPT` (reject every RCPT with 5xx) or
    `-r MAIL` (4xx for MAIL) make it a misbehaving peer.
  * `messages()` returns the dumped transactions (bytes), oldest first.
  * Loopback only; the process is always stopped (context manager).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from pigeon.testing.live import require_tool


class SmtpSink:
    def __init__(
        self,
        address: str,
        port: int,
        dump_dir: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if not address.startswith("127."):
            raise ValueError("tests only listen on loopback")
        self.address, self.port = address, port
        # smtp-sink runs as "nobody", which cannot traverse pytest's private
        # tmp dirs: dump into a directory of our own directly under /tmp.
        self.dump_dir = Path(tempfile.mkdtemp(prefix="pigeon-sink-"))
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> SmtpSink:
        tool = require_tool("smtp-sink")
        os.chmod(self.dump_dir, 0o777)
        args = [
            tool,
            "-u",
            "nobody",
            "-d",
            f"{self.dump_dir}/%M.",
            *self.extra_args,
            f"{self.address}:{self.port}",
            "64",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"220"):
                        s.sendall(b"QUIT\r\n")
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"smtp-sink did not start on {self.address}:{self.port}")

    def messages(self) -> list[bytes]:
        """The transactions smtp-sink finished dumping, oldest first.

        smtp-sink creates a dump file before writing it: an empty one, or one
        not yet ending in a newline, is still being written and is left out
        (reading it raced the sink in tests)."""
        files = sorted(self.dump_dir.iterdir(), key=lambda p: p.stat().st_mtime)
        contents = (p.read_bytes() for p in files if p.is_file())
        return [c for c in contents if c.endswith(b"\n")]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()  # else a ResourceWarning whenever it is collected
        shutil.rmtree(self.dump_dir, ignore_errors=True)

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
