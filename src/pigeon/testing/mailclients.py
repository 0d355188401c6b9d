"""Real mail readers driven by tests: mbsync, offlineimap, neomutt, fetchmail, getmail6.

    account = Account("localhost", port, "alice@example.test", "secret", ca_file)
    box = Mbsync(tmp_path / "mbsync", account)
    box.sync()                         # CompletedProcess; ClientFailed on a non-zero exit
    box.messages()                     # [LocalMessage(path, flags, data)] of the local copy

Contract:
  * Each client gets its own directory (its configuration, its state, its
    local Maildir) and HOME pointing there, so nothing under the real home
    is read or written. Every run is bounded by `timeout` seconds (killed
    when over) and raises `ClientFailed` with the command's output when the
    client exits non-zero (or, for neomutt, when it runs out of time).
  * TLS: `Account.tls` is "implicit" (IMAPS/POP3S, RFC 8314) or "starttls"
    (STARTTLS / STLS); every client verifies the server's certificate
    against `ca_file` (a test CA: pigeon.testing.testca) for the host name
    `host` ("localhost": the test certificate's name, and 127.0.0.1 here).
  * The settings written here are the ones docs/imap.md and docs/pop3.md
    show users; a change here is a change there.
  * mbsync (isync 1.4: `SSLType`) and offlineimap synchronise INBOX and every
    folder both ways; deletions propagate (mbsync `Expunge Both`,
    offlineimap's default). `messages(folder)` reads the local Maildir.
  * neomutt runs in a pseudo-terminal (it needs one even in batch mode) with
    `-e 'push ...'` keys; `index()` parses its index lines (a distinctive
    index_format) from the screen, `read(n)` pipes message n to a file and
    displays it (so neomutt marks it \\Seen), `delete(n)` deletes and
    expunges it.
  * fetchmail and getmail6 hand every retrieved message to a command that
    writes it to `out/` (no local MTA, no delivery as root); `fetch()`
    returns the messages of that run. `keep=False` deletes them on the
    server (at QUIT: POP3's UPDATE state).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pigeon.testing.ptyrun import run_in_pty

__all__ = [
    "Account",
    "ClientFailed",
    "Fetchmail",
    "Getmail",
    "IndexLine",
    "LocalMessage",
    "Mbsync",
    "Neomutt",
    "OfflineImap",
]


class ClientFailed(AssertionError):
    """A mail client exited non-zero or ran out of time; the message has its output."""


@dataclass(frozen=True)
class Account:
    host: str
    port: int
    user: str
    password: str
    ca_file: Path
    tls: str = "implicit"  # or "starttls"


@dataclass(frozen=True)
class LocalMessage:
    path: Path
    flags: str  # the Maildir info letters after ":2,", e.g. "FS"
    data: bytes


@dataclass(frozen=True)
class IndexLine:
    number: int
    flags: str
    subject: str


def _tool(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", 1) else "")
    if not found:
        raise ClientFailed(f"{name} is not installed")
    return found


class _Client:
    def __init__(self, workdir: Path, account: Account) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.account = account
        self.env = dict(os.environ, HOME=str(self.dir), LC_ALL="C.UTF-8")

    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=self.env,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            output = f"{exc.stdout!s}{exc.stderr!s}"  # str (text=True) or None
            raise ClientFailed(f"{argv[0]} ran over {timeout}s: {output}") from None
        if done.returncode != 0:
            raise ClientFailed(
                f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done


def maildir_messages(maildir: Path) -> list[LocalMessage]:
    """Every message of a local Maildir (new/ and cur/), sorted by file name."""
    out = []
    for sub in ("new", "cur"):
        d = Path(maildir) / sub
        if not d.is_dir():
            continue
        for path in sorted(d.iterdir()):
            _, _, info = path.name.partition(":2,")
            out.append(LocalMessage(path, info, path.read_bytes()))
    return out


# ---------------------------------------------------------------------- IMAP sync


class Mbsync(_Client):
    """isync's mbsync: one channel, every folder, both ways, deletions too."""

    def __init__(self, workdir: Path, account: Account) -> None:
        super().__init__(workdir, account)
        self.local = self.dir / "Maildir"
        self.local.mkdir(exist_ok=True)
        a = account
        self.rc = self.dir / "mbsyncrc"
        self.rc.write_text(
            "IMAPAccount pigeon\n"
            f'Host {a.host}\nPort {a.port}\nUser "{a.user}"\nPass "{a.password}"\n'
            f"SSLType {'IMAPS' if a.tls == 'implicit' else 'STARTTLS'}\n"
            f"CertificateFile {a.ca_file}\n\n"
            "IMAPStore pigeon-remote\nAccount pigeon\n\n"
            "MaildirStore pigeon-local\n"
            f"Path {self.local}/\nInbox {self.local}/INBOX\nSubFolders Verbatim\n\n"
            "Channel pigeon\nFar :pigeon-remote:\nNear :pigeon-local:\n"
            "Patterns *\nCreate Both\nExpunge Both\nSyncState *\nSync All\n"
        )
        self.rc.chmod(0o600)

    def sync(self, timeout: float = 120.0) -> subprocess.CompletedProcess:
        return self._run([_tool("mbsync"), "-c", str(self.rc), "-a", "-V"], timeout)

    def messages(self, folder: str = "INBOX") -> list[LocalMessage]:
        return maildir_messages(self.local / folder)


class OfflineImap(_Client):
    """offlineimap (offlineimap3): one account, every folder, both ways."""

    def __init__(self, workdir: Path, account: Account) -> None:
        super().__init__(workdir, account)
        self.local = self.dir / "Maildir"
        a = account
        implicit = a.tls == "implicit"
        self.rc = self.dir / "offlineimaprc"
        self.rc.write_text(
            "[general]\naccounts = pigeon\n"
            f"metadata = {self.dir / 'metadata'}\nui = basic\n\n"
            "[Account pigeon]\nlocalrepository = local\nremoterepository = remote\n\n"
            f"[Repository local]\ntype = Maildir\nlocalfolders = {self.local}\n\n"
            "[Repository remote]\ntype = IMAP\n"
            f"remotehost = {a.host}\nremoteport = {a.port}\n"
            f"remoteuser = {a.user}\nremotepass = {a.password}\n"
            f"ssl = {'yes' if implicit else 'no'}\nstarttls = {'no' if implicit else 'yes'}\n"
            f"sslcacertfile = {a.ca_file}\nmaxconnections = 1\n"
        )

    def sync(self, timeout: float = 120.0) -> subprocess.CompletedProcess:
        done = self._run([_tool("offlineimap"), "-c", str(self.rc), "-o", "-u", "basic"], timeout)
        # offlineimap reports a failed folder or connection and still exits 0.
        if re.search(r"^\s*ERROR|Traceback|ERROR:", done.stdout + done.stderr, re.M):
            raise ClientFailed(f"offlineimap reported errors:\n{done.stdout}\n{done.stderr}")
        return done

    def messages(self, folder: str = "INBOX") -> list[LocalMessage]:
        return maildir_messages(self.local / folder)


# ---------------------------------------------------------------------- neomutt

_INDEX = re.compile(r"\[idx (\d+) flags=(.{0,6}?) subj=([^\]\r\n]*)\]")


class Neomutt(_Client):
    """neomutt in a pseudo-terminal, driven by pushed keys, no user files read."""

    def __init__(self, workdir: Path, account: Account, folder: str = "INBOX") -> None:
        super().__init__(workdir, account)
        a = account
        scheme = "imaps" if a.tls == "implicit" else "imap"
        user = a.user.replace("@", "%40")
        self.rc = self.dir / "muttrc"
        self.rc.write_text(
            f'set folder="{scheme}://{user}@{a.host}:{a.port}/"\n'
            f'set spoolfile="+{folder}"\n'
            f'set imap_user="{a.user}"\nset imap_pass="{a.password}"\n'
            f'set ssl_ca_certificates_file="{a.ca_file}"\n'
            "set ssl_force_tls=yes\nset ssl_starttls=yes\n"
            f'set certificate_file="{self.dir / "certificates"}"\n'
            'set header_cache=""\nset message_cachedir=""\n'
            # An index line that tests can find on the screen (no trailing
            # "|": that would make the format a command).
            'set index_format="[idx %C flags=%Z subj=%s]"\n'
            "set sort=mailbox-order\nset wait_key=no\nset confirmappend=no\n"
            "set quit=yes\nset move=no\nset mark_old=no\nset delete=yes\n"
            "set beep=no\nset help=no\nset timeout=1\nset pipe_decode=no\n"
        )

    def run(self, keys: str, timeout: float = 60.0) -> str:
        """Start neomutt on the folder, push `keys` (ending in <quit>) and
        return what it drew on the screen."""
        argv = [_tool("neomutt"), "-n", "-F", str(self.rc), "-e", f'push "{keys}"']
        status, screen = run_in_pty(argv, timeout=timeout, env=self.env, cwd=self.dir)
        if status is None:
            raise ClientFailed(f"neomutt ran over {timeout}s; screen:\n{screen[-2000:]}")
        if status != 0:
            raise ClientFailed(f"neomutt exited {status}; screen:\n{screen[-2000:]}")
        return screen

    def index(self) -> list[IndexLine]:
        """The index lines neomutt drew, one per message (the last drawing of each)."""
        screen = self.run("<quit>")
        lines = {
            int(m[1]): IndexLine(int(m[1]), m[2].strip(), m[3].strip())
            for m in _INDEX.finditer(screen)
        }
        return [lines[n] for n in sorted(lines)]

    def read(self, number: int) -> bytes:
        """Message `number` (1-based, index order) as neomutt pipes it; displaying
        it marks it \\Seen on the server (synced before neomutt quits)."""
        out = self.dir / f"read-{number}.eml"
        out.unlink(missing_ok=True)
        self.run(
            f"{number}<enter><pipe-message>cat > {out}<enter>"
            "<display-message><exit><sync-mailbox><quit>"
        )
        if not out.exists():
            raise ClientFailed(f"neomutt did not pipe message {number}")
        return out.read_bytes()

    def delete(self, number: int) -> None:
        """Delete message `number` and expunge it (sync), as a user would."""
        self.run(f"{number}<enter><delete-message><sync-mailbox><quit>")


# ---------------------------------------------------------------------- POP3


class _Pop3Client(_Client):
    def __init__(self, workdir: Path, account: Account) -> None:
        super().__init__(workdir, account)
        self.out = self.dir / "out"
        self.out.mkdir(exist_ok=True)

    def _collect(self) -> list[bytes]:
        """The messages this run wrote, oldest first; the directory is emptied."""
        found = sorted(self.out.iterdir(), key=lambda p: (p.stat().st_mtime_ns, p.name))
        data = [p.read_bytes() for p in found]
        for p in found:
            p.unlink()
        return data


class Fetchmail(_Pop3Client):
    """fetchmail, POP3 (STLS or POP3S), every message to a file."""

    def fetch(self, keep: bool = True, timeout: float = 120.0) -> list[bytes]:
        a = self.account
        rc = self.dir / "fetchmailrc"
        tls = "ssl" if a.tls == "implicit" else "sslproto 'tls1.2+'"
        rc.write_text(
            "set no bouncemail\nset no syslog\n"
            f"poll {a.host} service {a.port} protocol POP3 timeout 30\n"
            f'  user "{a.user}" there with password "{a.password}" is "root" here\n'
            f'  {tls} sslcertck sslcertfile "{a.ca_file}"\n'
            f"  {'keep' if keep else 'nokeep'} fetchall\n"
            f"  mda \"/bin/sh -c 'cat > {self.out}/msg.$$'\"\n"
        )
        rc.chmod(0o600)  # fetchmail refuses a readable rc file (it holds a password)
        argv = [_tool("fetchmail"), "-f", str(rc), "--nodetach", "-v"]
        argv += ["--pidfile", str(self.dir / "pid"), "-i", str(self.dir / "fetchids")]
        try:
            self._run(argv, timeout)
        except ClientFailed as exc:
            # Exit 1: "no mail" (RFC-less fetchmail convention), not a failure.
            if " exited 1:" not in str(exc):
                raise
        return self._collect()


class Getmail(_Pop3Client):
    """getmail6, POP3S (it has no STLS), every message to a file through a command."""

    def fetch(
        self, keep: bool = True, read_all: bool = True, timeout: float = 120.0
    ) -> list[bytes]:
        """`read_all=False`: only messages whose UIDL getmail has not seen before."""
        a = self.account
        if a.tls != "implicit":
            raise ClientFailed("getmail6 speaks POP3 over implicit TLS only (no STLS)")
        rc = self.dir / "getmailrc"
        rc.write_text(
            "[retriever]\ntype = SimplePOP3SSLRetriever\n"
            f"server = {a.host}\nport = {a.port}\n"
            f"username = {a.user}\npassword = {a.password}\n"
            f"ca_certs = {a.ca_file}\ntimeout = 30\n\n"
            "[destination]\ntype = MDA_external\npath = /bin/sh\n"
            f'arguments = ("-c", "cat > {self.out}/msg.$$")\n'
            "allow_root_commands = true\n\n"
            f"[options]\nread_all = {'true' if read_all else 'false'}\n"
            f"delete = {'false' if keep else 'true'}\nverbose = 2\n"
        )
        self._run([_tool("getmail"), "--getmaildir", str(self.dir), "--rcfile", str(rc)], timeout)
        return self._collect()
