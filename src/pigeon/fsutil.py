"""Small file-system helpers shared by the queue store, the Maildir agent and the log.

Contract:
  * `fsync_dir(path)` makes the directory's entries (a file just created,
    renamed or linked into it) durable: POSIX only promises that a rename
    survives a crash once the directory itself is fsync'ed.
  * `ensure_file(path, mode)` creates `path` empty with exactly `mode`
    (fchmod after the exclusive create, so the umask has no say) unless it
    exists; an existing file keeps the mode it has (the administrator's
    choice). Used where the code that fills the file cannot be given a
    mode itself: SQLite databases (their -wal and -shm files copy the
    database's mode) and the log file. docs/security.md lists every file
    pigeon creates and its mode.
  * `STORAGE_ERRNOS`: the errnos that mean the storage itself failed (full,
    over quota, I/O error, read-only, file too large): expected conditions
    of a full or failing disk, reported without a traceback
    (pigeon.queue.health, the log writer).
  * `write_probe(directory, fsync)` writes, fsyncs and removes a
    PROBE_SIZE file in `directory`: evidence that the storage under it takes
    writes again (the queue manager's storage retry rounds, for the queue
    and for a Maildir that failed). A small write that fits where a big one
    did not must not end a "disk full" episode, hence the size.
  * `write_synced(fd, data)`: all of `data` written, then fsync'ed.
  * `write_atomically(path, data)`: `path` holds exactly `data` (mode 0600)
    or what it held before, whatever the crash: a `.tmp` file written and
    fsync'ed, renamed over `path`, the directory fsync'ed.
  * Errors (OSError) propagate: callers decide whether that is a 4xx.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

#: Octets of the probe file (`write_probe`).
PROBE_SIZE = 256 * 1024
PROBE_NAME = ".storage-probe"

STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EIO, errno.EROFS, errno.EFBIG}
)


def fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd`, then fsync it."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def write_atomically(path: Path | str, data: bytes) -> None:
    """Replace `path` by `data`, durably and all at once (see the contract)."""
    tmp = f"{os.fspath(path)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        write_synced(fd, data)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    fsync_dir(os.path.dirname(os.fspath(path)) or ".")


def ensure_file(path: Path | str, mode: int) -> bool:
    """Create `path` with exactly `mode` unless it exists (see the contract); True if created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return True


def write_probe(directory: Path, fsync: bool = True) -> None:
    """Write PROBE_SIZE octets to `directory`/PROBE_NAME, fsync, remove (see the contract)."""
    path = Path(directory) / PROBE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        data = memoryview(b"\0" * PROBE_SIZE)
        done = 0
        while done < len(data):
            done += os.write(fd, data[done:])
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
