"""Fixtures for the mailbox API tests: a store in a temporary directory and
a way to drop messages into a Maildir as delivery (or another program) does."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pigeon.mailstore.mailbox import Changes, MailStore, UserMail
from pigeon.mailstore.names import sized_name, unique_base


@pytest.fixture
def user(tmp_path: Path) -> UserMail:
    return MailStore(tmp_path / "mailboxes").user("alice", "example.test")


def drop(maildir: str, body: bytes = b"Subject: hi\n\nhello\n", seconds: int | None = None) -> str:
    """A message written into `maildir`/new/ the Maildir way (tmp, rename);
    its file name."""
    stored = body.replace(b"\r\n", b"\n")
    name = sized_name(unique_base(seconds), len(stored), len(stored) + stored.count(b"\n"))
    tmp = os.path.join(maildir, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(stored)
    os.rename(tmp, os.path.join(maildir, "new", name))
    return name


@pytest.fixture
def deliver() -> Callable[..., str]:
    return drop


def _sync_until(folder, done, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    """Sync `folder` until `done(changes so far)` (bounded): another program's
    change to cur/ made in the same clock tick as our last look shows only at
    the re-check a second later (mailstore/state.py)."""
    added: list[int] = []
    expunged: list[int] = []
    flagged: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        changes = folder.sync()
        added += changes.added
        expunged += changes.expunged
        flagged += changes.flag_changes
        merged = Changes(sorted(set(added)), sorted(set(expunged)), sorted(set(flagged)))
        if done(merged) or time.monotonic() > deadline:
            return merged
        time.sleep(0.05)


@pytest.fixture
def sync_until() -> Callable[..., Changes]:
    return _sync_until
