"""A throw-away PostgreSQL cluster for tests (issue 17: the PostgreSQL store).

Contract:
  * `PostgresCluster()` as a context manager: `initdb` into a fresh
    temporary directory, `pg_ctl start` listening on 127.0.0.1 at a free
    port (and a Unix socket inside that directory, never the system's
    /var/run/postgresql), then `stop -m immediate` and the directory
    removed when the block ends, whatever happened inside it.
  * Run as root (CI, this machine), the cluster belongs to an unprivileged
    user (PostgreSQL refuses to run as root): `postgres` when Debian's
    package created it, else `nobody`; the commands run through
    `setpriv`. Run as anyone else, it belongs to that user.
  * Durable like a real one: fsync and synchronous_commit stay on (the
    store's "250 only after COMMIT" is tested against real commits); only
    the connection limits are raised for the tests' many connections.
  * Authentication is `trust`, on loopback and the private socket only:
    the cluster lives for one test session and holds test data only.
  * `dsn(database)` is a libpq URL (postgresql://pigeon@127.0.0.1:PORT/DB);
    `new_database()` creates an empty database with a fresh name (the
    conformance suite gets one per check, pigeon.testing.store_conformance).
  * `require_postgres()` finds the server binaries (Debian's
    /usr/lib/postgresql/<version>/bin, newest first, or PATH); missing,
    the test is skipped, or fails under CI=true (CONTRIBUTING.md, rule 18:
    .ci/run installs `postgresql`). psycopg missing is handled the same way.
  * `pause()` stops the server keeping its data, `resume()` starts it again
    on the same port: a database outage for the store's tests.
  * Every wait is bounded (pg_ctl -w -t); a cluster that does not start
    raises RuntimeError with the tail of its log.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from pigeon.testing.live import free_port

__all__ = ["PostgresCluster", "require_postgres"]

_START_TIMEOUT = 60  # seconds pg_ctl waits for the server (-t)
_SUPERUSER = "pigeon"


def _missing(reason: str) -> None:
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must provide it: see .ci/run)")
    pytest.skip(reason)


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl are, or None."""
    base = Path("/usr/lib/postgresql")
    if base.is_dir():
        versions = sorted(
            (p for p in base.iterdir() if p.name.isdigit() and (p / "bin" / "initdb").exists()),
            key=lambda p: int(p.name),
            reverse=True,
        )
        if versions:
            return versions[0] / "bin"
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def require_postgres() -> Path:
    """The server's bin directory, after checking psycopg imports (see the contract)."""
    bindir = find_bindir()
    if bindir is None:
        _missing("PostgreSQL server binaries (initdb, pg_ctl) not installed")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg (the PostgreSQL driver) not installed")
    assert bindir is not None
    return bindir


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged owner when we are root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) to run as")


class PostgresCluster:
    """One private PostgreSQL server (see the contract)."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or require_postgres()
        self.port = 0
        self.root: Path | None = None
        self._user = _run_as()
        self._names = itertools.count(1)
        self._started = False

    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "run"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _cmd(self, *args: str | Path) -> list[str]:
        argv = [str(a) for a in args]
        if self._user is None:
            return argv
        u = self._user
        return ["setpriv", f"--reuid={u.pw_uid}", f"--regid={u.pw_gid}", "--clear-groups", *argv]

    def _run(self, *args: str | Path, timeout: float = _START_TIMEOUT + 30) -> None:
        proc = subprocess.run(
            self._cmd(*args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{Path(str(args[0])).name} failed ({proc.returncode}): "
                f"{(proc.stdout + proc.stderr)[-2000:]}{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        log = self.root / "server.log" if self.root else None
        if log is None or not log.exists():
            return ""
        return "\nserver log:\n" + log.read_text(errors="replace")[-2000:]

    def start(self) -> PostgresCluster:
        self.root = Path(tempfile.mkdtemp(prefix="pigeon-pg-"))
        try:
            self.socket_dir.mkdir()
            if self._user is not None:
                for p in (self.root, self.socket_dir):
                    os.chown(p, self._user.pw_uid, self._user.pw_gid)
            os.chmod(self.root, 0o700)
            self._run(
                self.bindir / "initdb",
                "-D",
                self.data_dir,
                f"--username={_SUPERUSER}",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            )
            self.port = free_port()
            self.resume()
        except BaseException:
            self.stop()
            raise
        return self

    def pause(self) -> None:
        """Stop the server, keeping its data (a database outage); `resume()` ends it."""
        self._run(self.bindir / "pg_ctl", "-D", self.data_dir, "-m", "fast", "-w", "stop")
        self._started = False

    def resume(self) -> None:
        """Start the server (again) on the same port and data."""
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.socket_dir} "
            "-c max_connections=200 -c fsync=on -c synchronous_commit=on"
        )
        self._run(
            self.bindir / "pg_ctl",
            "-D",
            self.data_dir,
            "-l",
            self.root / "server.log" if self.root else "server.log",
            "-o",
            options,
            "-w",
            "-t",
            str(_START_TIMEOUT),
            "start",
        )
        self._started = True

    def stop(self) -> None:
        """Stop the server (immediately: its data is thrown away) and remove it all."""
        if self.root is None:
            return
        if self._started:
            try:
                self._run(self.bindir / "pg_ctl", "-D", self.data_dir, "-m", "immediate", "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass  # the directory goes anyway; the log said why
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run one statement outside a transaction (CREATE DATABASE needs that)."""
        import psycopg

        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            conn.execute(sql.encode())

    def new_database(self) -> str:
        """An empty database with a fresh name; its DSN is `dsn(name)`."""
        name = f"test{next(self._names)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name
