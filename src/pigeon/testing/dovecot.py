"""A private, throw-away Dovecot on loopback, reading a Maildir tree pigeon's layout uses.

    dv = PrivateDovecot(workdir, mail_root, {"alice@example.test": "secret"},
                        cert_file=cert, key_file=key)
    dv.start()            # DovecotUnavailable when it cannot run here
    ... IMAP on 127.0.0.1:dv.imaps_port (implicit TLS) or dv.imap_port (STARTTLS) ...
    dv.stop()

Contract:
  * Everything Dovecot writes lives under `workdir/dovecot` (its configuration,
    run and state directories, its index files, its log); /etc/dovecot is
    never read (`dovecot -c` with our own file) nor changed. It listens on
    127.0.0.1 only, on free ports: IMAP (STARTTLS), IMAPS and, when
    `pop3=True`, POP3 and POP3S. The master runs in the foreground as our
    child (`dovecot -F`), so stopping it (SIGTERM, bounded wait, SIGKILL)
    ends every process it started.
  * Mail: `mail_root/<domain>/<local>/` is the Maildir of `local@domain`
    (pigeon's `<data_dir>/mailboxes` layout, docs/architecture.md), Maildir++
    folders (`.Junk`) are its folders with UTF-8 names on disk
    (`LAYOUT=maildir++:UTF-8`), "/" the hierarchy separator (as pigeon's
    mailstore/folders.py and IMAP). Index files go to Dovecot's own directory; the control
    files (dovecot-uidlist, dovecot-keywords) stay in the Maildir, where
    Dovecot reads keyword letters from `dovecot-keywords` as pigeon writes it.
  * Users: a passwd-file of `users` (name -> password), LOGIN and
    AUTHENTICATE PLAIN only inside TLS (Dovecot's default). A password is
    plain text, unless it starts with a Dovecot scheme in braces: then it is
    written as it is ("{ARGON2ID}$argon2id$v=19$...": the benchmark gives
    Dovecot the same argon2id hash pigeon stores, so both do the same work
    at login).
  * Dovecot refuses to open mail as root, so every mailbox is read and written
    by `mail_user` (default "nobody"): `start()` and `grant()` hand the
    tree under `mail_root` to that user (chown) and make the directories
    above it searchable by others (o+x, no read): test and benchmark
    directories only, never a real mail store.
  * Starting needs root, the `dovecot` binary (Debian dovecot-core plus
    dovecot-imapd, and dovecot-pop3d for POP3) and Dovecot's system users
    "dovecot" and "dovenull"; when any is missing `start()` raises
    `DovecotUnavailable` with the reason, so callers skip (or, under
    CI=true, fail) instead of crashing.
  * `settings` is extra configuration text appended to the generated file,
    `services` extra lines inside `service NAME { }` blocks (process and
    client limits for the benchmark, for example).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from pigeon.testing.live import free_port

__all__ = ["DovecotUnavailable", "PrivateDovecot", "grant", "process_tree"]

LOOPBACK = "127.0.0.1"


def _schemed(password: str) -> str:
    """A passwd-file password: "{SCHEME}..." as it is, else plain text (module contract)."""
    if password.startswith("{") and "}" in password:
        return password
    return "{PLAIN}" + password


class DovecotUnavailable(Exception):
    """A private Dovecot cannot be started here; the message says why."""


def grant(root: Path, uid: int, gid: int) -> None:
    """Hand the tree under `root` to uid:gid and let others search every
    directory above it (o+x): Dovecot's mail processes must reach it."""
    root = Path(root)
    for parent in reversed(root.resolve().parents):
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod((mode & 0o7777) | 0o001)
    os.chown(root, uid, gid)
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(top, name), uid, gid, follow_symlinks=False)


def process_tree(root: int) -> list[int]:
    """`root` and every live process under it (read from /proc)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rpartition(")")[2].split()[1])
    found: list[int] = []
    todo = [root]
    while todo and len(found) < len(parent) + 1:  # bounded: each pid once
        pid = todo.pop()
        found.append(pid)
        todo.extend(child for child, pp in parent.items() if pp == pid)
    return found


class PrivateDovecot:
    """A throw-away Dovecot: configuration, indexes and log under one directory."""

    def __init__(
        self,
        workdir: Path,
        mail_root: Path,
        users: dict[str, str],
        *,
        cert_file: Path,
        key_file: Path,
        pop3: bool = False,
        mail_user: str = "nobody",
        settings: str = "",
        services: dict[str, str] | None = None,
    ) -> None:
        self.dir = Path(workdir) / "dovecot"
        self.mail_root = Path(mail_root)
        self.users = dict(users)
        self.cert_file, self.key_file = Path(cert_file), Path(key_file)
        self.pop3 = pop3
        self.mail_user = mail_user
        self.settings = settings
        self.services = dict(services or {})
        self.config_path = self.dir / "dovecot.conf"
        self.log_path = self.dir / "dovecot.log"
        self.index_dir = self.dir / "index"
        self.imap_port = self.imaps_port = self.pop3_port = self.pop3s_port = 0
        self.proc: subprocess.Popen | None = None

    # ------------------------------------------------------------------ set-up

    def _binary(self) -> str:
        found = shutil.which("dovecot") or (
            "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None
        )
        if not found:
            raise DovecotUnavailable("dovecot not found (Debian packages dovecot-core, -imapd)")
        if not Path("/usr/lib/dovecot/imap").exists():
            raise DovecotUnavailable("Dovecot's imap binary is missing (dovecot-imapd)")
        if self.pop3 and not Path("/usr/lib/dovecot/pop3").exists():
            raise DovecotUnavailable("Dovecot's pop3 binary is missing (dovecot-pop3d)")
        if os.geteuid() != 0:
            raise DovecotUnavailable("a private Dovecot needs root (it changes to mail_user)")
        for user in ("dovecot", "dovenull", self.mail_user):
            try:
                pwd.getpwnam(user)
            except KeyError:
                raise DovecotUnavailable(f"system user {user!r} does not exist") from None
        return found

    def _config(self) -> str:
        owner = pwd.getpwnam(self.mail_user)
        d = self.dir
        blocks = dict.fromkeys(self.services, "")
        blocks["imap-login"] = (
            f"  inet_listener imap {{\n    address = {LOOPBACK}\n    port = {self.imap_port}\n  }}\n"
            f"  inet_listener imaps {{\n    address = {LOOPBACK}\n"
            f"    port = {self.imaps_port}\n    ssl = yes\n  }}\n"
        )
        if self.pop3:
            blocks["pop3-login"] = (
                f"  inet_listener pop3 {{\n    address = {LOOPBACK}\n"
                f"    port = {self.pop3_port}\n  }}\n"
                f"  inet_listener pop3s {{\n    address = {LOOPBACK}\n"
                f"    port = {self.pop3s_port}\n    ssl = yes\n  }}\n"
            )
        listeners = "".join(
            f"service {name} {{\n{text}{self.services.get(name, '')}}}\n"
            for name, text in blocks.items()
        )
        return (
            "# Private Dovecot (pigeon.testing.dovecot; deleted after the run).\n"
            f"instance_name = pigeon-test-{self.imap_port}\n"
            f"base_dir = {d / 'run'}\n"
            f"state_dir = {d / 'state'}\n"
            f"listen = {LOOPBACK}\n"
            f"protocols = imap{' pop3' if self.pop3 else ''}\n"
            f"log_path = {self.log_path}\n"
            "ssl = yes\n"
            f"ssl_cert = <{self.cert_file}\n"
            f"ssl_key = <{self.key_file}\n"
            "disable_plaintext_auth = yes\n"
            "auth_mechanisms = plain login\n"
            "passdb {\n  driver = passwd-file\n"
            f"  args = scheme=PLAIN username_format=%u {d / 'passwd'}\n}}\n"
            "userdb {\n  driver = static\n"
            f"  args = uid={owner.pw_uid} gid={owner.pw_gid} home={d / 'home'}/%Ld/%Ln\n}}\n"
            # pigeon's layout: <mail_root>/<domain>/<local>/, Maildir++ folders.
            # Folder names are UTF-8 on disk, as pigeon writes them (mailstore/folders.py).
            f"mail_location = maildir:{self.mail_root}/%Ld/%Ln:LAYOUT=maildir++:UTF-8"
            f":INDEX={self.index_dir}/%Ld/%Ln\n"
            "namespace inbox {\n  inbox = yes\n  separator = /\n}\n"
            "default_internal_user = dovecot\n"
            "default_login_user = dovenull\n" + listeners + self.settings
        )

    def start(self, timeout: float = 20.0) -> PrivateDovecot:
        binary = self._binary()
        owner = pwd.getpwnam(self.mail_user)
        self.imap_port, self.imaps_port = free_port(), free_port()
        if self.pop3:
            self.pop3_port, self.pop3s_port = free_port(), free_port()
        for sub in ("run", "state", "home", "index"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        (self.dir / "run").chmod(0o755)
        for sub in ("home", "index"):
            os.chown(self.dir / sub, owner.pw_uid, owner.pw_gid)
        (self.dir / "passwd").write_text(
            "".join(f"{name}:{_schemed(pw)}\n" for name, pw in self.users.items())
        )
        self.config_path.write_text(self._config())
        self.mail_root.mkdir(parents=True, exist_ok=True)
        self.grant()
        log = open(self.dir / "master.out", "ab")
        self.proc = subprocess.Popen(
            [binary, "-F", "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DovecotUnavailable(
                    f"dovecot exited with {self.proc.returncode}: {self.log()}"
                )
            if self._greets():
                return self
            time.sleep(0.05)
        self.stop()
        raise DovecotUnavailable(f"dovecot did not answer on {self.imap_port}: {self.log()}")

    def _greets(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.imap_port), timeout=1.0) as s:
                s.settimeout(3.0)
                return s.recv(512).startswith(b"* OK")
        except OSError:
            return False

    def grant(self) -> None:
        """Hand `mail_root` (again) to the mail user: files pigeon wrote since
        the last call are root's, and Dovecot could not read them."""
        owner = pwd.getpwnam(self.mail_user)
        grant(self.mail_root, owner.pw_uid, owner.pw_gid)

    # ------------------------------------------------------------------ running

    def log(self) -> str:
        parts = []
        for path in (self.dir / "master.out", self.log_path):
            try:
                parts.append(path.read_text(errors="replace")[-3000:])
            except OSError:
                pass
        return "\n".join(parts)

    def pids(self) -> list[int]:
        """The master and every process under it (login, imap, auth...)."""
        return process_tree(self.proc.pid) if self.proc is not None else []

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> PrivateDovecot:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
