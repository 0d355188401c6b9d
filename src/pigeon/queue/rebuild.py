"""`pigeon queue rebuild`, the store side: the queue database rebuilt from the files.

Contract:
  * `rebuild(root, from_files=...)` runs with pigeon stopped: it holds
    owner.lock exclusively throughout (`StoreBusy` while pigeon runs; pigeon
    refuses to start meanwhile), opens queue.db with `PRAGMA quick_check`
    and runs `QueueStore.recover(adopt_all=True)`: every content file
    without a row gets one from its preamble, whatever store id it carries
    (after queue.db was restored from a backup, or lost); what cannot be
    rebuilt is quarantined as 'corrupt'; nothing is deleted but tmp/ debris
    and empty files. Returns the `RecoveryReport`.
  * `from_files`: queue.db (damaged or not) is first moved aside with its
    -wal and -shm (dbfile.move_aside), to queue.db.corrupt-<UTC time>, or
    queue.db.replaced-<time> when it was sound; a new one is made. Without
    it a damaged database raises `StoreCorrupt`.
  * Run as root, the files it created are given to the owner of the queue
    directory, so pigeon running as its own user can open them.
  * The rules it applies, and why, are in queue/recovery.py.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pigeon.queue.api import RecoveryReport
from pigeon.queue.dbfile import StoreCorrupt, lock_owner, move_aside
from pigeon.queue.store import QueueStore

__all__ = ["rebuild"]

log = logging.getLogger("pigeon.queue")


def rebuild(root: Path, *, from_files: bool = False, fsync: bool = True) -> RecoveryReport:
    """`pigeon queue rebuild`: offline, add a row for every content file that
    has none, from its preamble, whatever its store id (after queue.db was
    restored from a backup, or lost); what cannot be rebuilt is quarantined,
    nothing is deleted but tmp/ debris and empty files (recover()).

    `from_files`: first move queue.db (damaged or not) aside to
    queue.db.corrupt-<time> (queue.db.replaced-<time> when it was sound) and
    start a new one. Without it a damaged database raises `StoreCorrupt`.
    Holds owner.lock exclusively throughout: `StoreBusy` while pigeon runs.
    """
    root = Path(root)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner_fd = lock_owner(root, exclusive=True)
    try:
        if from_files and (root / "queue.db").exists():
            label, probe = "replaced", QueueStore(root, fsync=fsync)
            try:
                probe.open(verify=True)
            except StoreCorrupt:
                label = "corrupt"
            else:
                probe.close()
            aside = move_aside(root / "queue.db", label)
            log.warning("queue database moved aside to %s; rebuilding from %s", aside, root / "msg")
        store = QueueStore(root, fsync=fsync)
        store.open(verify=True)
        try:
            return store.recover(adopt_all=True)
        finally:
            store.close()
            _give_to_queue_owner(root)
    finally:
        os.close(owner_fd)


def _give_to_queue_owner(root: Path) -> None:
    """Run as root (the usual way to repair), rebuild() may have created
    queue.db and the lock files as root: give them to the owner of the queue
    directory, so pigeon, running as its own user, can open them."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    owner = root.stat()
    for name in ("queue.db", "queue.db-wal", "queue.db-shm", "queue.lock", "owner.lock"):
        try:
            os.chown(root / name, owner.st_uid, owner.st_gid)
        except FileNotFoundError:
            pass
