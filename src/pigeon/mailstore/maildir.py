"""A Maildir's directories: tmp/ new/ cur/, made sure of once per process.

Contract:
  * `ensure_maildir(maildir)` creates the Maildir and its tmp/ new/ cur/
    (mode 0700) when missing. A Maildir++ folder (a last component starting
    with a dot, ".Junk") is a Maildir inside its Maildir, which is made sure
    of first. Directories it creates are made durable (fsync
    of their parent), otherwise a crash could lose the directory holding a
    message already reported delivered.
  * It remembers, process-wide, the Maildirs it has made sure of, so a
    delivery to a known mailbox costs no mkdir()/stat() calls. A caller that
    finds such a directory gone (an administrator removed the mailbox: ENOENT
    on tmp/ or new/) calls `forget_maildir()` and `ensure_maildir()` again.
  * `maildir_exists(maildir)` answers from that memory before it asks the
    disk (one stat), for the receive checks (policy/newmailboxes.py).
  * The memory is bounded (`KNOWN_MAX` Maildirs, then forgotten all at once)
    and safe to use from worker threads: single add/discard/in operations
    under the GIL.
  * Failure modes: OSError (ENOSPC, EACCES, EIO) propagates to the caller.
"""

from __future__ import annotations

import os
from pathlib import Path

from pigeon.fsutil import fsync_dir

__all__ = ["KNOWN_MAX", "ensure_maildir", "forget_maildir", "maildir_exists"]

#: Maildirs whose tmp/ new/ cur/ exist (made durable by us, or found).
_KNOWN_MAILDIRS: set[str] = set()
KNOWN_MAX = 100_000

SUBDIRS = ("tmp", "new", "cur")


def ensure_maildir(maildir: Path | str, *, fsync: bool = True) -> None:
    """Create `maildir` and its tmp/ new/ cur/ if missing (see the module contract)."""
    key = os.fspath(maildir)
    if key in _KNOWN_MAILDIRS:
        return
    if Path(maildir).name.startswith("."):  # a Maildir++ folder: inside a whole Maildir
        ensure_maildir(Path(maildir).parent, fsync=fsync)
    created: list[Path] = []
    missing = []
    p = Path(maildir)
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
            created.append(d)
        except FileExistsError:
            pass
    for sub in SUBDIRS:
        try:
            (Path(maildir) / sub).mkdir(mode=0o700)
            created.append(Path(maildir) / sub)
        except FileExistsError:
            pass
    if fsync:
        for parent in {d.parent for d in created}:
            fsync_dir(parent)
    if len(_KNOWN_MAILDIRS) >= KNOWN_MAX:
        _KNOWN_MAILDIRS.clear()
    _KNOWN_MAILDIRS.add(key)


def maildir_exists(maildir: Path | str) -> bool:
    """Does `maildir` exist? A Maildir this process made sure of counts
    without a stat() (the receive checks ask for every recipient)."""
    key = os.fspath(maildir)
    return key in _KNOWN_MAILDIRS or os.path.isdir(key)


def forget_maildir(maildir: Path | str) -> None:
    """Make the next `ensure_maildir(maildir)` look at the disk again."""
    _KNOWN_MAILDIRS.discard(os.fspath(maildir))
