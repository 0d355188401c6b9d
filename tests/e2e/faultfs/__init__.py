"""Real storage faults for end-to-end tests: a small private file system, an I/O-error shim.

* `FaultyPigeon(workdir, config, fs_size=..., shim=...)` is a
  `PigeonProcess` started inside a private mount namespace (`unshare -m`)
  with a tmpfs of `fs_size` mounted on its data directory, and tied to
  the test by `setpriv --pdeathsig KILL`: when the test process dies, so
  does pigeon, and with it the namespace and the mount. Nothing is ever
  mounted in the test's own namespace. `view(path)` is where the test
  sees a path of pigeon's namespace (`/proc/<pid>/root/...`): the data
  directory lives only there.
* `build_shim(directory)` compiles faultinject.c (next to this file) with
  gcc; with `shim=` given, pigeon runs with it preloaded, faulting writes
  under `fault_path` while `fault(...)` has switched the control file on.
  `shimmed_pigeon(tmp_path, config, fault_under)` is a plain `PigeonProcess`
  with the shim, on the machine's file system, and its control file.
* `Filler` takes every free block of a file system and keeps taking what
  is freed (a runaway writer on an operator's bad day) until `release()`.
* `Blackhole` accepts SMTP connections and never answers (a next hop that
  accepted the TCP connection and never greets); `close()` drops them (the
  client sees the connection lost) and stops listening.
* `Letter`: a 1 MB-ish test message with a Message-ID, a token and the
  hash of its body, and `delivered_letters(...)` finds them again in
  Maildirs or smtp-sink dumps.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from pigeon.testing.live import PigeonProcess, require_tool

HERE = Path(__file__).resolve().parent


def build_shim(directory: Path) -> Path:
    gcc = require_tool("gcc")
    out = Path(directory) / "faultinject.so"
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-O2", "-o", str(out), str(HERE / "faultinject.c"), "-ldl"],
        check=True,
        capture_output=True,
    )
    return out


def shimmed_pigeon(
    tmp_path: Path, config_text: str, fault_under: str
) -> tuple[PigeonProcess, Path]:
    """A `PigeonProcess` in `tmp_path/p` on the machine's own file system with
    the shim preloaded, faulting what lies under `data/<fault_under>` while
    the returned control file exists (faultinject.c: its words)."""
    shim = build_shim(tmp_path)
    control = tmp_path / "fault.control"
    workdir = tmp_path / "p"
    server = PigeonProcess(
        workdir,
        config_text,
        env={
            "LD_PRELOAD": str(shim),
            "FAULT_CONTROL": str(control),
            "FAULT_PATH": str(workdir / "data" / fault_under),
        },
    )
    return server, control


class FaultyPigeon(PigeonProcess):
    """pigeon on its own small tmpfs, in its own mount namespace (module doc)."""

    def __init__(
        self,
        workdir: Path,
        config_text: str = "",
        *,
        fs_size: str = "64m",
        shim: Path | None = None,
        fault_path: str = "",
        **kwargs,
    ) -> None:
        require_tool("unshare")
        require_tool("setpriv")
        workdir = Path(workdir)
        self.control = workdir / "fault.control"
        env = dict(kwargs.pop("env", None) or {})
        if shim is not None:
            env.update(
                LD_PRELOAD=str(shim),
                FAULT_CONTROL=str(self.control),
                FAULT_PATH=fault_path or str(workdir / "data"),
            )
        mount = 'mount -t tmpfs -o "size=$0,mode=0700" tmpfs "$1" || exit 97; shift; exec "$@"'
        wrap = [
            "setpriv",
            "--pdeathsig",
            "KILL",
            "--",
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            mount,
            fs_size,
            str(workdir / "data"),
        ]
        super().__init__(workdir, config_text, env=env, wrap=wrap, **kwargs)
        self.data_dir.mkdir(parents=True, exist_ok=True)  # the mount point

    def view(self, path: Path | str) -> Path:
        """`path` (absolute, as pigeon sees it) as the test can reach it."""
        assert self.proc is not None and self.proc.poll() is None, "pigeon is not running"
        return Path(f"/proc/{self.proc.pid}/root") / Path(path).relative_to("/")

    @property
    def data(self) -> Path:
        return self.view(self.data_dir)

    def queue_states(self) -> dict[str, str]:
        """queue_id -> state, read inside pigeon's namespace: SQLite resolves
        symbolic links in a database path, so /proc/<pid>/root would lead it
        back to the test's own (empty) mount point."""
        require_tool("nsenter")
        script = (
            "import json, sqlite3, sys; db = sqlite3.connect(sys.argv[1], timeout=10); "
            "print(json.dumps(dict(db.execute('SELECT queue_id, state FROM queue'))))"
        )
        out = subprocess.run(
            [
                "nsenter",
                "-t",
                str(self.proc.pid),
                "-m",
                "--",
                sys.executable,
                "-c",
                script,
                str(self.data_dir / "queue" / "queue.db"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return json.loads(out.stdout)

    def fault(self, on: bool, spec: str = "EIO") -> None:
        """Switch the shim's fault on (`spec`: errno name, then "write"/"fsync") or off."""
        if on:
            self.control.write_text(spec)
        else:
            self.control.unlink(missing_ok=True)

    def free_bytes(self) -> int:
        st = os.statvfs(self.data)
        return st.f_bavail * st.f_frsize


class Filler:
    """Takes every free block under `directory`, and keeps taking what is freed."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / "filler"
        self._stop = threading.Event()
        self._full = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, timeout: float = 30.0) -> Filler:
        self._thread.start()
        assert self._full.wait(timeout), "the file system never filled up"
        return self

    def _run(self) -> None:
        chunks = (b"\0" * 65536, b"\0" * 4096, b"\0" * 512)
        with open(self.path, "wb", buffering=0) as fh:
            for _ in range(10_000_000):  # bounded; ends on release()
                if self._stop.is_set():
                    break
                wrote = False
                for chunk in chunks:
                    try:
                        fh.write(chunk)
                        wrote = True
                        break
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC, exc
                if not wrote:
                    self._full.set()
                    self._stop.wait(0.005)

    def release(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.path.unlink(missing_ok=True)


class Blackhole:
    """A TCP listener on `host`:`port` (loopback) that accepts and never says a word."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        assert host.startswith("127."), "tests only listen on loopback"
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for _ in range(100_000):  # bounded; ends on close()
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()


_TOKEN = re.compile(rb"^X-Token: (\S+)", re.M)


@dataclass(frozen=True)
class Letter:
    token: str
    message_id: str
    body_hash: str
    data: bytes
    recipients: tuple[str, ...]

    @classmethod
    def make(cls, token: str, recipients: tuple[str, ...], size: int = 1_000_000) -> Letter:
        message_id = f"<{token}@faults.test>"
        head = (
            f"From: flood@client.test\r\nTo: {', '.join(recipients)}\r\n"
            f"Subject: {token}\r\nMessage-ID: {message_id}\r\nX-Token: {token}\r\n\r\n"
        )
        line = f"{token} body line of a storage fault test .........................\r\n"
        body = (line * (size // len(line) + 1)).encode() + f"END {token}\r\n".encode()
        return cls(token, message_id, body_hash(body), head.encode() + body, recipients)


def body_hash(body: bytes) -> str:
    """sha256 of the body with LF line ends (Maildir stores LF, SMTP carries
    CRLF) and no trailing empty lines (smtp-sink ends its dumps with one)."""
    return hashlib.sha256(body.replace(b"\r\n", b"\n").rstrip(b"\n")).hexdigest()


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    """(header, body) of a stored message, CRLF or LF."""
    text = raw.replace(b"\r\n", b"\n")
    head, _, body = text.partition(b"\n\n")
    return head, body


def letters_in(files: list[bytes]) -> list[tuple[str, str, str]]:
    """(token, Message-ID, body hash) of every test letter among stored messages."""
    out = []
    for raw in files:
        head, body = split_message(raw)
        token = _TOKEN.search(head + b"\n")
        mid = re.search(rb"^Message-ID: (\S+)", head, re.M | re.I)
        if token:
            out.append(
                (token.group(1).decode(), mid.group(1).decode() if mid else "", body_hash(body))
            )
    return out


def maildir_files(data_dir: Path, address: str) -> list[bytes]:
    local, _, domain = address.lower().partition("@")
    new = Path(data_dir) / "mailboxes" / domain / local / "new"
    out = []
    for p in sorted(new.iterdir()) if new.is_dir() else []:
        try:
            out.append(p.read_bytes())
        except FileNotFoundError:
            pass
    return out


def sink_files(sink) -> list[bytes]:
    """smtp-sink dumps: the message follows the sink's own header lines."""
    return list(sink.messages()) if sink is not None else []
