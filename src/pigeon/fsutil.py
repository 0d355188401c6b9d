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
  * `write_probe(path, size, fsync=...)` writes `size` zero octets to a new
    file at `path`, fsyncs it (if `fsync`) and removes it: the evidence
    that a storage episode is over (queue/health.py) is a write that needs
    new blocks, not one that fits in space already held.
  * Errors (OSError) propagate: callers decide whether that is a 4xx.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EIO, errno.EROFS, errno.EFBIG}
)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_probe(path: Path | str, size: int, *, fsync: bool) -> None:
    """Write, sync and remove a probe file of `size` octets (see the contract)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        data = memoryview(b"\0" * size)
        done = 0
        while done < size:
            done += os.write(fd, data[done:])
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass


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
