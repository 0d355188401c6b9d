"""Every exit status a command documents (its --help "exit status" paragraph)
is what the command really returns: one case per (command, status), and a
check that the cases and the documentation list the same statuses."""

from __future__ import annotations

import importlib
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pigeon.cli import sendmail as S
from pigeon.cli.main import COMMANDS, EPILOG, main
from pigeon.testing.admin_backend import Backend
from pigeon.testing.live import PigeonProcess, free_port
from pigeon.testing.sandbox import Sandbox, needs_sandbox

PW = "correct horse battery"
#: Servers these tests start listen on their own SMTP port only (no default IMAP ports).
NO_IMAP = "imap = { listen = [], tls_listen = [] }\n"


class World:
    """A scratch directory other users can reach, a configuration and helpers."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pigeon-exit-"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.data.mkdir()
        self.cfg = self.config(self.data)
        self._backends: list = []

    def config(
        self, data_dir: Path, top: str = "", name: str = "pigeon.toml", tables: str = ""
    ) -> Path:
        """A configuration file: `top`-level keys, then the tables."""
        path = self.root / name
        path.write_text(
            top + f'\ndata_dir = "{data_dir}"\nhostname = "mx.example.test"\n'
            '[domains."example.test"]\n[queue]\nfsync = false\n'
            '[admin]\nmetrics_listen = ""\n' + tables
        )
        os.chmod(path, 0o644)
        return path

    def bad_config(self) -> Path:
        path = self.root / "bad.toml"
        path.write_text("limits = 3\n")
        return path

    def server(self):
        b = Backend(self.root / f"srv{len(self._backends)}")
        self._backends.append(b)
        return b

    def close(self) -> None:
        for b in self._backends:
            b.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def world():
    w = World()
    yield w
    w.close()


_SANDBOX = []  # a Sandbox, started when the checkout is out of nobody's reach


@pytest.fixture(scope="module", autouse=True)
def _close_the_sandbox():
    yield
    while _SANDBOX:
        _SANDBOX.pop().close()


def run_as_nobody(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """`argv` run by an unprivileged user (nobody); needs root.

    A checkout under a directory others cannot search (a clone in a 0700
    temporary directory, /root) is made reachable inside a private mount
    namespace (pigeon.testing.sandbox), changing nothing on the machine."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a command as another user")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is not installed")
    kw.setdefault("env", {k: v for k, v in os.environ.items() if k != "PIGEON_CONFIG"})
    if needs_sandbox():
        if not _SANDBOX:
            _SANDBOX.append(Sandbox().start())
        return _SANDBOX[0].run(argv, user="nobody", group="nogroup", **kw)
    return subprocess.run(
        [setpriv, "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", *argv],
        capture_output=True,
        timeout=60,
        **kw,
    )


def as_other_user(argv: list[str], **kw) -> int:
    """`python -m pigeon ARGV` run by nobody: its exit status (never a traceback)."""
    done = run_as_nobody([sys.executable, "-m", "pigeon", *argv], **kw)
    assert b"Traceback" not in done.stderr, done.stderr
    return done.returncode


def serve_process(
    world: World,
    extra: str = "",
    data_dir: Path | None = None,
    as_nobody: bool = False,
    tables: str = "",
) -> int:
    port = free_port()
    cfg = world.config(
        data_dir or world.root / "serve-data",
        f'listen = ["127.0.0.1:{port}"]\nsubmission_listen = []\nsubmissions_listen = []\n'
        + NO_IMAP
        + extra,
        name="serve.toml",
        tables=tables,
    )
    argv = [sys.executable, "-m", "pigeon", "serve", "-c", str(cfg)]
    if as_nobody:
        done = run_as_nobody(argv)
    else:
        done = subprocess.run(argv, capture_output=True, timeout=60)
    assert b"Traceback" not in done.stderr, done.stderr
    return done.returncode


# --- serve ---------------------------------------------------------------------------------
# Each case takes `workers`: the statuses are the same with one process and with several
# (test_serve_statuses_are_the_same_in_both_modes).


def serve_0(world, workers: int = 1):
    proc = PigeonProcess(
        world.root / "p0", f'workers = {workers}\n[admin]\nmetrics_listen = ""\n'
    ).start()
    return proc.stop()


def serve_69(world, workers: int = 1):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = world.config(
            world.root / "d69",
            f'workers = {workers}\nlisten = ["127.0.0.1:{port}"]\nsubmission_listen = []\n'
            "submissions_listen = []\n" + NO_IMAP,
            name="s69.toml",
        )
        return subprocess.run(
            [sys.executable, "-m", "pigeon", "serve", "-c", str(cfg)],
            capture_output=True,
            timeout=60,
        ).returncode


def serve_73(world, workers: int = 1):
    (world.root / "a-file").write_text("not a directory\n")
    return serve_process(world, f"workers = {workers}\n", data_dir=world.root / "a-file")


def _serve_73_damaged_queue_db(world, workers: int = 1):
    queue = world.root / "serve-data" / "queue"
    queue.mkdir(parents=True)
    (queue / "queue.db").write_bytes(b"not an SQLite database, not at all" * 40)
    return serve_process(world, f"workers = {workers}\n")


def _serve_73_unusable_account_store(world, workers: int = 1):
    (world.root / "serve-data" / "accounts.db").mkdir(parents=True)  # not a database
    return serve_process(world, f"workers = {workers}\n")


def _newer(path: Path) -> None:
    """The store at `path` as a later pigeon would leave it: format 9
    (docs/upgrade.md); its tables are those of this pigeon, so only the
    version can stop it."""
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 9")
    conn.commit()
    conn.close()


def _serve_73_newer_queue(world, workers: int = 1):
    from pigeon.queue.store import QueueStore

    store = QueueStore(world.root / "serve-data" / "queue")
    store.open()
    store.close()
    _newer(world.root / "serve-data" / "queue" / "queue.db")
    return serve_process(world, f"workers = {workers}\n")


def _serve_73_newer_accounts(world, workers: int = 1):
    from pigeon.auth.accounts import AccountStore

    AccountStore(world.root / "serve-data" / "accounts.db").open().close()
    _newer(world.root / "serve-data" / "accounts.db")
    return serve_process(world, f"workers = {workers}\n")


def _serve_73_newer_mailboxes(world, workers: int = 1):
    (world.root / "serve-data" / "mailboxes").mkdir(parents=True)
    (world.root / "serve-data" / "mailboxes" / ".pigeon-format").write_text(
        "pigeon mailboxes format 9 written-by 9.0.0\n"
    )
    return serve_process(world, f"workers = {workers}\n")


def serve_75(world, workers: int = 1):
    """Another pigeon owns the data directory (app/datalock.py)."""
    with PigeonProcess(world.root / "p75", '[admin]\nmetrics_listen = ""\n') as first:
        return serve_process(world, f"workers = {workers}\n", data_dir=first.data_dir)


def serve_77(world, workers: int = 1):
    extra = f'workers = {workers}\nuser = "root"\n'
    if os.geteuid() == 0:
        # An unprivileged user asked to become root: only root can switch.
        import pwd

        (world.root / "serve-data").mkdir()
        nobody = pwd.getpwnam("nobody")
        os.chown(world.root / "serve-data", nobody.pw_uid, nobody.pw_gid)
        return serve_process(world, extra, as_nobody=True)
    return serve_process(world, extra)


def _serve_78_broken_certificate(world, workers: int = 1):
    cert = world.root / "cert.pem"
    cert.write_text("renewal went wrong\n")
    return serve_process(
        world,
        f"workers = {workers}\n",
        tables=f'[tls]\ncert_file = "{cert}"\nkey_file = "{cert}"\n',
    )


def serve_78(world):
    return main(["serve", "--config", str(world.bad_config())])


BOTH_MODES = [
    (serve_0, 0),
    (serve_69, 69),
    (serve_73, 73),
    (_serve_73_damaged_queue_db, 73),
    (_serve_73_unusable_account_store, 73),
    (_serve_73_newer_queue, 73),
    (_serve_73_newer_accounts, 73),
    (_serve_73_newer_mailboxes, 73),
    (serve_75, 75),
    (serve_77, 77),
    (_serve_78_broken_certificate, 78),
]


@pytest.mark.parametrize("case, status", BOTH_MODES, ids=lambda c: getattr(c, "__name__", c))
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_statuses_are_the_same_in_both_modes(world, case, status, workers):
    """One lifecycle owns the exit status, whether pigeon runs one process or several."""
    assert case(world, workers=workers) == status


# --- check-config ---------------------------------------------------------------------------


def check_0(world):
    return main(["check-config", str(world.cfg)])


def check_78(world):
    return main(["check-config", str(world.bad_config())])


# --- user ---------------------------------------------------------------------------------


def _user(argv, stdin=""):
    from pigeon.cli import user
    from pigeon.cli.main import build_parser

    return user.run(
        build_parser().parse_args(["user", *argv]), stdin=io.StringIO(stdin), ask=lambda prompt: ""
    )


def user_0(world):
    return _user(["-c", str(world.cfg), "add", "a@example.test", "--password-stdin"], PW)


def user_1(world):
    user_0(world)
    return user_0(world)  # already exists


def user_64(world):
    return _user(["-c", str(world.cfg), "add", "a@example.test", "--password-stdin"], "short")


def user_67(world):
    return _user(["-c", str(world.cfg), "passwd", "nobody@example.test", "--password-stdin"], PW)


def user_73(world):
    (world.data / "accounts.db").mkdir()  # not a database
    return _user(["-c", str(world.cfg), "list"])


def user_77(world):
    user_0(world)  # accounts.db exists, 0600, root's
    return as_other_user(["user", "-c", str(world.cfg), "list"])


def user_78(world):
    return main(["user", "-c", str(world.bad_config()), "list"])


# --- queue ----------------------------------------------------------------------------------


def queue_0(world):
    b = world.server()
    return main(["queue", "list", "--data-dir", str(b.config.data_dir)])


def queue_64(world):
    b = world.server()
    return main(["queue", "hold", "--data-dir", str(b.config.data_dir)])  # no ids


def queue_65(world):
    b = world.server()
    q = b.commit("x@example.org")
    assert main(["queue", "show", "0000NOPE", "--data-dir", str(b.config.data_dir)]) == 65
    return main(["queue", "delete", q, "0000NOPE", "--data-dir", str(b.config.data_dir)])


def queue_69(world):
    return main(["queue", "flush", "-c", str(world.cfg)])  # not running


def queue_73(world):
    (world.data / "queue").mkdir()
    (world.data / "queue" / "queue.db").write_bytes(b"garbage, not a database\n" * 100)
    return main(["queue", "list", "-c", str(world.cfg)])  # offline: damaged db


def queue_75(world):
    from pigeon.queue.dbfile import lock_owner

    (world.data / "queue").mkdir()
    fd = lock_owner(world.data / "queue", exclusive=False)  # as a running pigeon
    try:
        return main(["queue", "rebuild", "-c", str(world.cfg)])
    finally:
        os.close(fd)


def queue_77(world):
    b = world.server()
    os.chmod(b.config.data_dir.parent, 0o755)
    return as_other_user(["queue", "list", "--data-dir", str(b.config.data_dir)])


def queue_78(world):
    return main(["queue", "list", "-c", str(world.bad_config())])


# --- status ---------------------------------------------------------------------------------


def status_0(world):
    b = world.server()
    return main(["status", "--data-dir", str(b.config.data_dir)])


def status_3(world):
    return main(["status", "-c", str(world.cfg)])


def status_73(world):
    from pigeon.queue.store import QueueStore

    store = QueueStore(world.data / "queue")
    store.open()
    store.close()
    _newer(world.data / "queue" / "queue.db")  # pigeon stopped: counts from the store
    return main(["status", "-c", str(world.cfg)])


def status_65(world):
    b = world.server()

    def broken():
        raise RuntimeError("statistics unavailable")

    b.manager.statistics = broken  # the server answers "internal error"
    return main(["status", "--data-dir", str(b.config.data_dir)])


def status_77(world):
    b = world.server()
    os.chmod(b.config.data_dir.parent, 0o755)
    return as_other_user(["status", "--data-dir", str(b.config.data_dir)])


def status_78(world):
    return main(["status", "-c", str(world.bad_config())])


# --- log ------------------------------------------------------------------------------------


def _log_file(world):
    path = world.root / "pigeon.log"
    path.write_text("t pigeon.mail: ABCD1234: from=<a@b> (queued)\n")
    return path


def log_0(world):
    return main(["log", "--log-file", str(_log_file(world)), "ABCD1234"])


def log_1(world):
    return main(["log", "--log-file", str(_log_file(world)), "ZZZZ9999"])


def log_64(world):
    return main(["log", "--log-file", str(_log_file(world)), "not-an-id"])


def log_66(world):
    return main(["log", "-c", str(world.cfg), "ABCD1234"])  # no log.file


def log_78(world):
    return main(["log", "-c", str(world.bad_config()), "ABCD1234"])


# --- sendmail -------------------------------------------------------------------------------


def _sendmail(world, argv, message=b"Subject: x\n\nhi\n", cfg=None):
    return S.run_argv(["-C", str(cfg or world.cfg), *argv], stdin=io.BytesIO(message))


def sendmail_0(world):
    return _sendmail(world, ["bob@example.test"])


def sendmail_64(world):
    return _sendmail(world, ["-t"])  # no recipient


def sendmail_65(world):
    cfg = world.config(world.data, name="small.toml", tables="[limits]\nmessage_size = 100\n")
    return _sendmail(world, ["bob@example.test"], b"x" * 500 + b"\n", cfg=cfg)


def sendmail_67(world):
    return _sendmail(world, ["a b@@c"])


def sendmail_70(world, monkeypatch):
    def bug(*a, **kw):
        raise RuntimeError("a bug")

    monkeypatch.setattr(S.L, "prepare", bug)
    return _sendmail(world, ["bob@example.test"])


def sendmail_73(world):
    (world.data / "queue").write_text("not a directory\n")
    return _sendmail(world, ["bob@example.test"])


def sendmail_75(world, monkeypatch):
    # An ordinary user (who cannot write the queue) while pigeon is down.
    monkeypatch.setattr(S, "can_write_queue", lambda config: False)
    return _sendmail(world, ["bob@example.test"])


def sendmail_77(world):
    private = world.root / "private"
    private.mkdir(mode=0o700)
    (private / "data").mkdir()
    cfg = world.config(private / "data", name="private.toml")
    return as_other_user(["sendmail", "-C", str(cfg), "bob@example.test"], input=b"hi\n")


def sendmail_78(world):
    return _sendmail(world, ["bob@example.test"], cfg=world.bad_config())


# --- data ---------------------------------------------------------------------------------


def data_0(world):
    return main(["data", "show", "-c", str(world.cfg)])


def data_64(world):
    return main(["data", "downgrade", "--to", "0.0.1", "-c", str(world.cfg)])


def data_73(world):
    (world.data / "mailboxes").mkdir()
    (world.data / "mailboxes" / ".pigeon-format").write_text(
        "pigeon mailboxes format 9 written-by 9.0.0\n"
    )
    return main(["data", "show", "-c", str(world.cfg)])


def data_75(world):
    from pigeon.queue.dbfile import lock_owner

    (world.data / "queue").mkdir()
    fd = lock_owner(world.data / "queue", exclusive=False)  # as a running pigeon
    try:
        return main(["data", "downgrade", "--to", "0.1.0", "-c", str(world.cfg)])
    finally:
        os.close(fd)


def data_78(world):
    return main(["data", "show", "-c", str(world.bad_config())])


# --- every command (pigeon --help) ----------------------------------------------------------


def pigeon_0(world):
    return main(["version"])


def pigeon_64(world):
    return main(["no-such-command"])


def pigeon_77(world):
    return queue_77(world)


def pigeon_78(world):
    return check_78(world)


def pigeon_130(world, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("pigeon.cli.version.run", interrupted)
    return main(["version"])


def pigeon_141(world):
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run(
            [sys.executable, "-m", "pigeon", "version"], stdout=w, timeout=60
        ).returncode
    finally:
        os.close(w)


# --- dkim, dns -------------------------------------------------------------------------------


def dkim_0(world):
    return main(["dkim", "keygen", "example.test", "-c", str(world.cfg)])


def dkim_64(world):
    return main(["dkim", "keygen", "example.test", "--selector", "a_b", "-c", str(world.cfg)])


def dkim_73(world):
    argv = ["dkim", "keygen", "example.test", "--selector", "s1", "-c", str(world.cfg)]
    assert main(argv) == 0
    return main(argv)  # the selector exists: never overwritten


def dkim_78(world):
    return main(["dkim", "keygen", "example.test", "-c", str(world.bad_config())])


def _dns(world, *argv, **server):
    from pigeon.testing.dnsserver import DnsServer

    with DnsServer(zones={"example.test": "@ MX 10 mx.example.test.\n"}, **server) as dns:
        tables = f'[delivery]\ndns_servers = ["127.0.0.1:{dns.port}"]\ndns_timeout = 0.5\n'
        cfg = world.config(world.data, tables=tables, name="dns.toml")
        return main(["dns", *argv, "-c", str(cfg)])


def dns_0(world):
    return _dns(world, "example.test")


def dns_1(world):
    return _dns(world, "example.test", "--check")  # only the MX is published, no DKIM keys


def dns_64(world):
    return _dns(world, "not a domain")


def dns_73(world):
    directory = world.data / "dkim" / "example.test"
    directory.mkdir(parents=True)
    (directory / "s1-rsa.key").write_text("not a key\n")
    (directory / "s1-ed25519.key").write_text("not a key\n")
    return _dns(world, "example.test")


def dns_75(world):
    from pigeon.signing.keys import generate

    generate(world.data / "dkim", "example.test", "s1")  # else DKIM is missing: 1
    return _dns(world, "example.test", "--check", timeout={"example.test"})


def dns_78(world):
    return main(["dns", "example.test", "-c", str(world.bad_config())])


CASES = {
    (name.split("_")[0], int(name.split("_")[1])): fn
    for name, fn in dict(globals()).items()
    if re.fullmatch(r"(serve|check|user|queue|status|log|sendmail|data|dkim|dns|pigeon)_\d+", name)
}
DOC_NAME = {"check": "check-config", "pigeon": None}


def documented(command: str) -> set[int]:
    """The statuses in a command's "exit status" paragraph (pigeon --help for None)."""
    text = EPILOG if command is None else importlib.import_module(COMMANDS[command]).EPILOG
    paragraph = text[text.index("exit status") :]
    paragraph = paragraph.split("\n\n")[0]
    return {int(n) for n in re.findall(r"(?<![\w.])(\d{1,3})(?![\w.])", paragraph)}


@pytest.mark.parametrize("case", sorted(CASES), ids=lambda c: f"{c[0]}-{c[1]}")
def test_documented_status(case, world, monkeypatch, capsys):
    fn = CASES[case]
    args = (world, monkeypatch) if "monkeypatch" in fn.__code__.co_varnames else (world,)
    assert fn(*args) == case[1]


@pytest.mark.parametrize(
    "command",
    [
        "serve",
        "check",
        "user",
        "queue",
        "status",
        "log",
        "sendmail",
        "data",
        "dkim",
        "dns",
        "pigeon",
    ],
)
def test_every_documented_status_has_a_case(command):
    cmd = DOC_NAME.get(command, command)
    assert documented(cmd) == {s for c, s in CASES if c == command}
