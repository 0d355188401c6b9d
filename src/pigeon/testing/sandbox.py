"""A private mount namespace where a test may add users and write /etc, changing nothing.

Contract:
  * `Sandbox.start()` (root only) starts a holder process in a new mount
    namespace (`unshare --mount --propagation private`) and, inside it,
    lays a tmpfs-backed overlay over /etc: `useradd`, /etc/pigeon and the
    like change the overlay only, and vanish with the namespace. Paths the
    test names in `bind` are bind-mounted inside (e.g. the venv's
    `sendmail` over /usr/sbin/sendmail).
  * The interpreter and the pigeon checkout must be usable by unprivileged
    users (the server runs as its own user, `sendmail` as an ordinary
    one): an ancestor directory that others cannot search (a checkout
    under /root) is replaced, inside the namespace only, by a 0755 tmpfs
    holding bind mounts of just the paths needed.
  * `run(argv, user=None)` / `popen(...)` run a command inside (nsenter),
    as `user` when given (setpriv: that uid, its groups, no capabilities);
    `wrap()` is the prefix that does it as root, for a `PigeonProcess`.
  * `start()` waits until the holder's namespace is its own before it
    mounts anything (entering it earlier would enter the caller's: the
    mounts would land on the machine), and the set-up script checks it
    again.
  * `close()` stops the processes started with `popen`, then the holder;
    the namespace and every mount in it go away with them.
  * `require_sandbox()` skips the test when not root or when unshare,
    nsenter or setpriv are missing, except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pigeon

__all__ = ["Sandbox", "needs_sandbox", "require_sandbox"]

TOOLS = ("unshare", "nsenter", "setpriv", "useradd")


def require_sandbox() -> dict[str, str]:
    """The tools' paths; skip (fail under CI=true) when a sandbox cannot be made."""
    import pytest

    from pigeon.testing.live import require_tool

    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("this test needs root (CI runs as root)")
        pytest.skip("needs root: users and a mount namespace")
    return {name: require_tool(name) for name in TOOLS}


def _needed_paths() -> list[Path]:
    """What an unprivileged user must reach to run pigeon from this checkout."""
    paths = {
        Path(sys.prefix),
        Path(sys.base_prefix),
        # The directory holding the package, not only the package: the
        # extensions the build compiled (setup.py) share a module there.
        Path(pigeon.__file__).resolve().parent.parent,
        Path(os.path.realpath(sys.executable)).parent,
    }
    return sorted(paths)


def needs_sandbox() -> bool:
    """Whether an unprivileged user cannot reach the interpreter or this
    checkout directly (an ancestor directory others cannot search), so that
    running pigeon as that user takes a Sandbox."""
    return any(_blocked_ancestor(p) for p in _needed_paths())


def _blocked_ancestor(path: Path) -> Path | None:
    """The highest ancestor of `path` that others cannot search, if any."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
            return parent
    return None


class Sandbox:
    def __init__(self, bind: dict[str, str] | None = None) -> None:
        self.tools = require_sandbox()
        self.bind = dict(bind or {})
        self.scratch = Path(tempfile.mkdtemp(prefix="pigeon-sandbox-"))
        self.holder: subprocess.Popen | None = None
        self.started: list[subprocess.Popen] = []

    # --- set-up ---------------------------------------------------------------------------

    def start(self) -> Sandbox:
        self.holder = subprocess.Popen(
            [self.tools["unshare"], "--mount", "--propagation", "private", "sleep", "infinity"]
        )
        try:
            self._wait_for_namespace()
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_for_namespace(self, timeout: float = 30.0) -> None:
        """Until the holder has its own mount namespace. Entering it before
        `unshare` ran enters OURS, and every mount below would land on the
        machine itself (/etc, /root: seen once on a loaded machine)."""
        assert self.holder is not None
        ours = os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.holder.poll() is not None:
                raise RuntimeError(f"sandbox: unshare exited with {self.holder.returncode}")
            try:
                if os.readlink(f"/proc/{self.holder.pid}/ns/mnt") != ours:
                    return
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError("sandbox: the holder got no mount namespace of its own")

    def _setup(self) -> None:
        s = shlex.quote(str(self.scratch))
        ours = shlex.quote(os.readlink("/proc/self/ns/mnt"))
        script = [
            # Never mount in the caller's namespace (see _wait_for_namespace).
            f'[ "$(readlink /proc/self/ns/mnt)" != {ours} ] || exit 97',
            # The caller's umask (tests may have tightened it) must not make
            # the directories made here unsearchable for other users.
            "umask 022",
            f"mount -t tmpfs -o mode=0700 tmpfs {s}",
            # Explicit modes: the overlay's /etc takes the upper directory's
            # mode, and the caller's umask (tests may have tightened it)
            # must not make /etc unreadable to other users.
            f"mkdir -m 0755 {s}/up {s}/work {s}/hold",
            f"mount -t overlay overlay -o lowerdir=/etc,upperdir={s}/up,workdir={s}/work /etc",
        ]
        blocked = sorted({a for p in _needed_paths() if (a := _blocked_ancestor(p))})
        for n, top in enumerate(blocked):
            hold = f"{s}/hold/{n}"
            script += [
                f"mkdir {hold}",
                f"mount --bind {shlex.quote(str(top))} {hold}",
                f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(str(top))}",
            ]
            for path in _needed_paths():
                if top in path.parents or path == top:
                    rel = shlex.quote(str(path.relative_to(top)))
                    target = shlex.quote(str(path))
                    script += [f"mkdir -p {target}", f"mount --bind {hold}/{rel} {target}"]
        for source, target in self.bind.items():
            script.append(f"mount --bind {shlex.quote(source)} {shlex.quote(target)}")
        done = self.run(["sh", "-ec", "\n".join(script)])
        if done.returncode != 0:
            raise RuntimeError(f"sandbox set-up failed: {done.stderr.decode(errors='replace')}")

    # --- running commands -------------------------------------------------------------------

    def _argv(
        self, argv: list[str], user: str | None, cwd: str | None, group: str | None = None
    ) -> list[str]:
        inner = list(argv)
        if user is not None:
            inner = [
                self.tools["setpriv"],
                f"--reuid={user}",
                f"--regid={group or user}",
                "--init-groups",
                "--inh-caps=-all",
                *inner,
            ]
        if cwd is not None:
            inner = ["sh", "-c", 'cd "$0" && exec "$@"', cwd, *inner]
        assert self.holder is not None
        return [self.tools["nsenter"], "-t", str(self.holder.pid), "-m", "--", *inner]

    def wrap(self) -> list[str]:
        """The argv prefix that runs a command inside, as root (it execs the
        command: for `PigeonProcess(wrap=...)`)."""
        return self._argv([], None, None)

    def run(
        self,
        argv: list[str],
        *,
        user: str | None = None,
        group: str | None = None,
        cwd: str | None = None,
        timeout: float = 60,
        **kw,
    ) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        return subprocess.run(self._argv(argv, user, cwd, group), timeout=timeout, **kw)

    def popen(
        self, argv: list[str], *, user: str | None = None, cwd: str | None = None, **kw
    ) -> subprocess.Popen:
        proc = subprocess.Popen(self._argv(argv, user, cwd), **kw)
        self.started.append(proc)
        return proc

    # --- tear-down ---------------------------------------------------------------------------

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        if self.holder is not None and self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait(5)
        try:
            self.scratch.rmdir()
        except OSError:
            pass

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
