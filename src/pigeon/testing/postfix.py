"""A private, throw-away Postfix instance on 127.0.0.1 (for benchmarks and e2e tests).

    pf = PrivatePostfix(workdir, settings={"smtpd_tls_security_level": "may"})
    pf.start()            # PostfixUnavailable when it cannot run here
    ... talk SMTP to 127.0.0.1:pf.port ...; pf.maillog_text(); pf.sent_count()
    pf.stop()

Contract:
  * Everything lives under `workdir/postfix` (config, queue, data, maillog);
    /etc/postfix is only read (the stock master.cf is copied), never changed.
    The instance listens on 127.0.0.1:<free port> only, runs without chroot,
    and by default delivers everything to discard(8).
  * Starting needs root (Postfix's master refuses otherwise), the postfix
    and postconf tools and the "postfix" system user. When any is missing,
    `start()` raises `PostfixUnavailable` with the reason; callers skip (or,
    under CI=true, fail) rather than crash.
  * `settings` override or extend the generated main.cf parameters.
  * Postfix daemons run as the "postfix" user: every directory above
    `workdir` must be searchable by it (pytest's tmp_path is not: use a
    tempfile.mkdtemp() directory; `start()` makes workdir itself 0755).
  * `stop()` is idempotent and waits (bounded) until master and the smtpd
    port are gone.
Moved here from bench/accept_rate.py, which imports it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"


class PostfixUnavailable(Exception):
    """A private Postfix cannot be started here; the message says why."""


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/bin", "/usr/lib/postfix/sbin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_banner(port: int, timeout: float) -> bool:
    """True once 127.0.0.1:port answers with a 220 banner (within `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1.0) as s:
                s.settimeout(3.0)
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def wait_until(predicate, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


class PrivatePostfix:
    """A throw-away Postfix instance: config, queue and log under one temp dir."""

    QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")

    def __init__(
        self,
        workdir: Path,
        *,
        settings: dict[str, str] | None = None,
        hostname: str = "postfix.bench.test",
        domain: str = "bench.test",
    ) -> None:
        self.dir = Path(workdir) / "postfix"
        self.etc = self.dir / "etc"
        self.spool = self.dir / "spool"
        self.data = self.dir / "data"
        self.maillog = self.dir / "maillog"
        self.hostname = hostname
        self.domain = domain
        self.settings = dict(settings or {})
        self.port = 0
        self.started = False
        self.postfix = self.postconf = ""

    def _run(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        p = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if check and p.returncode != 0:
            raise PostfixUnavailable(
                f"`{' '.join(args)}` failed ({p.returncode}): "
                f"{(p.stdout + p.stderr).strip()[-400:]}\n{self.log_tail()}"
            )
        return p

    def log_tail(self, n: int = 8) -> str:
        try:
            lines = self.maillog.read_text(errors="replace").splitlines()
        except OSError:
            return "(no maillog)"
        return "maillog tail:\n  " + "\n  ".join(lines[-n:])

    def maillog_text(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> PrivatePostfix:
        postfix, postconf = find_tool("postfix"), find_tool("postconf")
        if not (postfix and postconf):
            raise PostfixUnavailable("postfix/postconf not found (Debian package postfix)")
        if os.geteuid() != 0:
            raise PostfixUnavailable("starting a private Postfix instance needs root")
        master_src = next(
            (
                p
                for p in (
                    Path("/etc/postfix/master.cf"),
                    Path("/etc/postfix/master.cf.proto"),
                    Path("/usr/share/postfix/master.cf.dist"),
                )
                if p.is_file()
            ),
            None,
        )
        if master_src is None:
            raise PostfixUnavailable("no stock master.cf found in /etc/postfix")
        try:
            owner = pwd.getpwnam("postfix")
        except KeyError:
            raise PostfixUnavailable("system user 'postfix' does not exist") from None
        self.postfix, self.postconf = postfix, postconf
        self.port = free_port()
        for d in (self.etc, self.spool, self.data):
            d.mkdir(parents=True, exist_ok=True)
        # Postfix daemons run as the postfix user: they must be able to reach the spool.
        for d in (self.dir.parent, self.dir):
            d.chmod(0o755)
        os.chown(self.data, owner.pw_uid, owner.pw_gid)
        shutil.copy(master_src, self.etc / "master.cf")
        d = self.dir
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.spool),
            "data_directory": str(self.data),
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.dir),
            "myhostname": self.hostname,
            "mydomain": self.domain,
            "myorigin": "$myhostname",
            "inet_interfaces": LOOPBACK,
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "mydestination": "localhost",
            # accept any local part (pigeon accepts any local part of "localhost" by default)
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "smtpd_recipient_restrictions": "permit_mynetworks, reject",
            # deliver everything to discard(8): receive + queue is measured, not delivery
            "local_transport": "discard",
            "default_transport": "discard",
            "relay_transport": "discard",
            **self.settings,
        }
        (self.etc / "main.cf").write_text(
            "# Private Postfix instance (pigeon.testing.postfix; deleted after the run).\n"
            + "".join(f"{k} = {v}\n" for k, v in settings.items())
        )
        cf = ["-c", str(self.etc)]
        self._run(postconf, *cf, "-F", "*/*/chroot = n")  # no chroot jail to populate
        self._run(postconf, *cf, "-M#", "smtp/inet")  # not port 25
        self._run(
            postconf,
            *cf,
            "-M",
            f"{LOOPBACK}:{self.port}/inet={LOOPBACK}:{self.port} inet n - n - - smtpd",
        )
        self._run(postfix, *cf, "check")
        self._run(postfix, *cf, "start")
        self.started = True
        if not wait_banner(self.port, 20):
            raise PostfixUnavailable(
                f"postfix did not answer on {LOOPBACK}:{self.port}\n{self.log_tail()}"
            )
        return self

    def queued(self) -> int:
        n = 0
        for q in self.QUEUES:
            for _root, _dirs, files in os.walk(self.spool / q):
                n += len(files)
        return n

    def sent_count(self) -> int:
        try:
            with open(self.maillog, "rb") as f:
                return sum(1 for line in f if b" status=sent " in line)
        except OSError:
            return -1

    def describe(self) -> dict:
        p = self._run(self.postconf, "-c", str(self.etc), "-h", "mail_version", check=False)
        return {"mail_version": p.stdout.strip(), "config_dir": str(self.etc)}

    def stop(self) -> None:
        if not self.started:
            return
        self._run(self.postfix, "-c", str(self.etc), "stop", check=False)
        pidfile = self.spool / "pid" / "master.pid"

        def gone() -> bool:
            try:
                pid = int(pidfile.read_text().split()[0])
                os.kill(pid, 0)
                return False
            except (OSError, ValueError, IndexError):
                return True

        wait_until(gone, 20, 0.1)
        # smtpd/cleanup children exit once master is gone; give them a moment.
        wait_until(lambda: not port_open(self.port), 10, 0.1)
        self.started = False
