"""A per-mailbox exclusive lock: one POP3 session per maildrop (RFC 1939 §8).

    lock = try_lock(maildir)          # None: another session holds it
    ...
    lock.release()

Contract:
  * The lock is `flock(LOCK_EX | LOCK_NB)` on the file LOCK_NAME inside the
    Maildir, beside its tmp/ new/ cur/ (created 0600 when missing, and
    never removed: removing a lock file races with the next locker). flock
    locks belong to an open file description, so two sessions of one
    process exclude each other just as two processes do, and another
    pigeon process on the same Maildir (or any program that flocks this
    file) cooperates. The kernel drops the lock when the process dies: a
    crash never leaves a mailbox locked.
  * `try_lock` never waits: a locked mailbox is the reader's answer
    (POP3: `-ERR [IN-USE]`, RFC 2449 §8.1.2), not a queue. It raises
    OSError when the Maildir cannot be opened at all.
  * Local delivery takes no lock: it only adds files to new/ (renamed in
    whole), which a session sees at its next login, never half-written.
  * Blocking file-system calls (open): call it from a worker thread.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["LOCK_NAME", "MailboxLock", "try_lock"]

LOCK_NAME = "pigeon-mailbox.lock"


class MailboxLock:
    """A held lock (module contract); `release()` is idempotent."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the description drops the flock

    def __enter__(self) -> MailboxLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def try_lock(maildir: Path | str) -> MailboxLock | None:
    """The exclusive lock of `maildir`, or None when it is held (module contract)."""
    path = Path(maildir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return MailboxLock(fd, path)
