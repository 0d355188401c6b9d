"""Run a real pigeon server in a subprocess, for end-to-end tests and benchmarks.

Contract:
  * `PigeonProcess` starts `python -m pigeon serve` on a free loopback port
    with its own data directory and configuration file, waits until the
    port accepts connections, and stops it with SIGTERM (or SIGKILL on
    request). It only ever listens on and talks to loopback: 127.0.0.1, or
    for its smtp role the loopback address `host` names. `wrap` is an
    argv prefix that must end by exec'ing the command it is given (e.g.
    `unshare -m sh -c '...; exec "$@"' sh`), so `proc.pid` is pigeon's.
  * `require_tool(name)` returns the tool's path; when it is missing the
    test is skipped, except under CI=true where the test fails (tests use
    real peers, and CI must have installed them).
  * `PigeonProcess.command(*argv)` runs another pigeon command (`queue`,
    `user`, `data`...) on the same configuration, as an operator would.
  * `proc.restart()` runs `pigeon restart` against it; the new process
    (not our child: the old one started it) becomes `proc.pid`, and
    `stop()`/`kill()` end whichever process serves now. `pid_alive(pid)`
    tells a running process from a gone or zombie one.
  * `maildir_messages(...)` lists delivered messages, for assertions.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

from pigeon.mailstore.names import arrival_key


def require_tool(name: str) -> str:
    import pytest

    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required in CI (install it in .ci/run)")
    pytest.skip(f"{name} is not installed")


#: Ports free_port() handed out in this process: the kernel may give a port
#: it just released again at once, and one test then got the same port for
#: two listeners ("submission_listen ... is also in listen").
_GIVEN: set[int] = set()

#: What the main process logs once every listener is bound (app/lifecycle.py).
_READY = "pigeon ready: "


def free_port() -> int:
    for _ in range(1000):  # bounded: there are far more free ports than tests
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port
    raise RuntimeError("no port that was not handed out already")


def maildir_messages(data_dir: Path, address: str) -> list[Path]:
    """The files in new/ of `address`'s Maildir, in arrival order (the unique
    name's time, microseconds and counter: mailstore/names.py `arrival_key`;
    sorting the names as text puts M99999 after M100000 within a second)."""
    local, _, domain = address.lower().partition("@")
    new = Path(data_dir) / "mailboxes" / domain / local / "new"
    if not new.is_dir():
        return []
    return sorted(new.iterdir(), key=lambda p: arrival_key(p.name.split(",", 1)[0]))


def pid_alive(pid: int) -> bool:
    """Is `pid` running (not gone, not a zombie waiting to be reaped)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def checker_pids(pid: int) -> list[int]:
    """The checker processes (app/checker.py) pigeon process `pid` started."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid and b"pigeon.app.checker" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll `predicate` until it returns a truthy value or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


class PigeonProcess:
    def __init__(
        self,
        workdir: Path,
        config_text: str = "",
        *,
        extra_args: list[str] | None = None,
        port: int | None = None,
        env: dict | None = None,
        hostname: str = "pigeon.test",
        wrap: list[str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.workdir = Path(workdir)
        #: The loopback address of the smtp role (another one than 127.0.0.1 lets a
        #: test's MX records point at this server without it being "us" to another).
        self.host = host
        self.data_dir = self.workdir / "data"
        self.port = port or free_port()
        # Every role gets its own free port, so servers can run side by side.
        self.submission_port = free_port()
        self.submissions_port = free_port()
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.pop3_port = free_port()
        self.pop3s_port = free_port()
        self.console_port = free_port()  # the HTTP API ([console] listen, docs/api.md)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "pigeon.toml"
        self.log_path = self.workdir / "pigeon.log"
        base = (
            f'hostname = "{hostname}"\n'
            f'data_dir = "{self.data_dir}"\n'
            f'listen = ["{host}:{self.port}"]\n'
            f'submission_listen = ["127.0.0.1:{self.submission_port}"]\n'
            f'submissions_listen = ["127.0.0.1:{self.submissions_port}"]\n'
        )
        text = self._with_ports(config_text, "pop3", self.pop3_port, self.pop3s_port)
        text = self._with_ports(text, "imap", self.imap_port, self.imaps_port)
        console = {"listen": f'listen = "127.0.0.1:{self.console_port}"\n'}
        text = self._with_keys(text, "console", console)
        self.config_path.write_text(base + text)
        self.extra_args = extra_args or []
        self.wrap = list(wrap or [])
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.successor: int | None = None  # the pid `pigeon restart` started

    @staticmethod
    def _with_ports(config_text: str, section: str, port: int, tls_port: int) -> str:
        """`config_text` with this server's own ports for a mail reader's
        `section` ("pop3", "imap": the defaults would have servers side by side
        clash): dotted top-level keys (`pop3.listen = ...`, kept by tests that
        rewrite what follows the base), or, when the text has that table, in
        the table (its own keys win)."""
        ports = {
            "listen": f'listen = ["127.0.0.1:{port}"]\n',
            "tls_listen": f'tls_listen = ["127.0.0.1:{tls_port}"]\n',
        }
        return PigeonProcess._with_keys(config_text, section, ports)

    @staticmethod
    def _with_keys(config_text: str, section: str, ports: dict[str, str]) -> str:
        """`config_text` with the lines of `ports` (key -> "key = value\\n") in
        `section`, unless the text sets that key there itself (see _with_ports)."""
        lines = config_text.splitlines(keepends=True)
        stripped = [line.strip() for line in lines]
        if f"[{section}]" not in stripped:
            return "".join(f"{section}." + line for line in ports.values()) + config_text
        at = stripped.index(f"[{section}]") + 1
        for line in lines[at:]:
            if line.lstrip().startswith("["):
                break
            ports.pop(line.split("=")[0].strip(), None)
        return "".join(lines[:at]) + "".join(ports.values()) + "".join(lines[at:])

    def api_url(self, path: str = "") -> str:
        """The URL of `path` on this server's HTTP API (docs/api.md)."""
        return f"http://127.0.0.1:{self.console_port}{path}"

    @property
    def pid(self) -> int:
        """The pid serving now: the last restart's new process, else ours."""
        if self.successor is not None:
            return self.successor
        assert self.proc is not None
        return self.proc.pid

    def restart(self, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """`pigeon restart`; on success the new pid is `self.pid` from now on."""
        done = self.command("restart", text=True, timeout=timeout)
        took_over = re.search(r"\(pid (\d+)\) took over", done.stdout)
        if done.returncode == 0 and took_over:
            self.successor = int(took_over.group(1))
        return done

    #: Every PigeonProcess started and not yet stopped: the e2e conftest stops
    #: what a test left running, so no test leaks a server into the next.
    started: ClassVar[set[PigeonProcess]] = set()

    def start(self, timeout: float = 15.0) -> PigeonProcess:
        self.successor = None
        PigeonProcess.started.add(self)
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = dict(os.environ, **(self.env or {}))
        self.proc = subprocess.Popen(
            [
                *self.wrap,
                sys.executable,
                "-m",
                "pigeon",
                "serve",
                "--config",
                str(self.config_path),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        readies = self.log().count(_READY)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pigeon exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as s:
                    s.settimeout(5.0)
                    banner = s.recv(512)
                    if banner.startswith(b"220"):
                        s.sendall(b"QUIT\r\n")
                        while s.recv(512):  # wait for 221 and the close, so the
                            pass  # probe no longer counts as a session
                        return self._all_listening(readies, deadline)
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pigeon did not start listening on {self.port}:\n{self.log()}")

    def _all_listening(self, readies: int, deadline: float) -> PigeonProcess:
        """Wait (until `deadline`) for this start's "pigeon ready" line: the
        listeners are bound one after another (net/listener.py), SMTP first,
        so a test reaching IMAP or POP3 right after the SMTP banner could be
        refused on a loaded machine. Logged once every listener listens; not
        waited for when this start's first line is not in the log (a `[log]`
        file elsewhere or a level above info: nothing to wait for there)."""
        assert self.proc is not None
        if f"pigeon starting (pid {self.proc.pid})" not in self.log():
            return self
        while time.monotonic() < deadline and self.log().count(_READY) <= readies:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pigeon exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.02)
        return self

    def command(
        self,
        *argv: str,
        stdin: bytes | None = None,
        text: bool = False,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess:
        """`pigeon ARGV...` run as an operator would, with this server's
        configuration ($PIGEON_CONFIG); output captured (bytes, or str with
        `text=True`)."""
        env = dict(os.environ, **(self.env or {}), PIGEON_CONFIG=str(self.config_path))
        return subprocess.run(
            [sys.executable, "-m", "pigeon", *argv],
            input=stdin,
            capture_output=True,
            text=text,
            env=env,
            timeout=timeout,
            cwd=self.workdir,
        )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, and the exit status (None for a successor: not our child)."""
        PigeonProcess.started.discard(self)
        if self.successor is not None:
            self._end_successor(signal.SIGTERM, timeout)
            return None
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill(self) -> None:
        if self.successor is not None:
            self._end_successor(signal.SIGKILL, 10)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def _end_successor(self, sig: int, timeout: float) -> None:
        """Signal the process `pigeon restart` started and wait until it is gone
        (it is not our child: we cannot wait() for it)."""
        pid, self.successor = self.successor, None
        assert pid is not None
        if self.proc is not None:
            try:
                self.proc.wait(timeout)  # the old process ends first
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if pid_alive(pid):
            os.kill(pid, sig)
            if not wait_for(lambda: not pid_alive(pid), timeout):
                os.kill(pid, signal.SIGKILL)
                wait_for(lambda: not pid_alive(pid), 10)

    def __enter__(self) -> PigeonProcess:
        # Already started (start() called first, e.g. under a special
        # umask): don't start a second server that nobody would stop.
        if self.proc is not None and self.proc.poll() is None:
            return self
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def recv_reply(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Read from `sock` until the buffer ends with a complete final reply line."""
    sock.settimeout(timeout)
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return buf
        buf += chunk
        lines = buf.split(b"\r\n")
        if (
            buf.endswith(b"\r\n")
            and len(lines) >= 2
            and len(lines[-2]) >= 4
            and lines[-2][3:4] == b" "
        ):
            return buf
