"""Small durability helpers shared by the queue store and the Maildir agent.

Contract:
  * `fsync_dir(path)` makes the directory's entries (a file just created,
    renamed or linked into it) durable: POSIX only promises that a rename
    survives a crash once the directory itself is fsync'ed.
  * Errors (OSError) propagate: callers decide whether that is a 4xx.
"""
from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
