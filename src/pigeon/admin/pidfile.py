"""The PID file: where scripts find the running pigeon (`kill -HUP $(cat ...)`).

Contract:
  * Path: `[admin] pid_file`, default `<data_dir>/pigeon.pid` (Postfix keeps
    its master.pid under the queue directory too). Content: the main
    process's pid and a newline.
  * `PidFile(path).claim()` runs before the listeners are bound: a file that
    names a live pigeon process (not this one) is refused (`PidFileError`,
    naming the key) - two servers must not share one PID file. A file that
    names a dead process, or a live one that is not a pigeon (a pid reused
    after a crash or a reboot), is stale and will be replaced; it is logged.
  * `write()` runs once start-up is done (listeners bound, before dropping
    privileges): the pid goes to a temporary file in the same directory
    (created exclusively, never through a symlink), which is then renamed
    over the path: a reader sees the old file or the new one, never half a
    file. Mode 0644 whatever the umask (a pid is no secret; the data
    directory around the default path is 0700 anyway).
  * `remove()` at exit deletes the file only if it still holds our pid (a
    successor may have written its own). It never raises: after dropping
    privileges the directory may not be ours (choose a pid_file in a
    directory the pigeon user may write, e.g. systemd's RuntimeDirectory).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["PidFile", "PidFileError", "PID_FILE_MODE"]

log = logging.getLogger("pigeon.admin")

PID_FILE_MODE = 0o644


class PidFileError(Exception):
    """Another pigeon holds the PID file, or it cannot be written; the text names the key."""


def read_pid(path: Path) -> int | None:
    """The pid written in `path`, or None (missing, unreadable, not a number)."""
    try:
        # Bytes, not read_text(encoding=...): at exit, after dropping root, a
        # codec module imported lazily may no longer be readable.
        text = Path(path).read_bytes().decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _is_live_pigeon(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's: look at what it runs
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # alive and cannot tell: do not steal its file
    return any(b"pigeon" in arg for arg in argv)


class PidFile:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._written = False

    def claim(self) -> None:
        """Refuse a PID file held by another live pigeon (see the contract)."""
        pid = read_pid(self.path)
        if pid is None or pid == os.getpid():
            return
        if _is_live_pigeon(pid):
            raise PidFileError(
                f"admin.pid_file: {self.path}: pigeon (pid {pid}) is already "
                "running with this PID file"
            )
        log.info("replacing the stale PID file %s (pid %d is not a running pigeon)", self.path, pid)

    def write(self) -> None:
        """Atomically write our pid (see the contract); PidFileError naming the key if
        the directory is missing or not writable."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            tmp.unlink(missing_ok=True)
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                PID_FILE_MODE,
            )
            try:
                os.fchmod(fd, PID_FILE_MODE)  # the umask must not decide
                os.write(fd, f"{os.getpid()}\n".encode())
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise PidFileError(
                f"admin.pid_file: {self.path}: cannot write it: {exc.strerror or exc}"
            ) from None
        self._written = True

    def remove(self) -> None:
        if not self._written:
            return
        self._written = False
        if read_pid(self.path) != os.getpid():
            return
        try:
            self.path.unlink()
        except OSError as exc:
            log.warning("cannot remove the PID file %s: %s", self.path, exc.strerror or exc)
