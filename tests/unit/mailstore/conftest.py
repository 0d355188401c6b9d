"""Fixtures for the mailbox API tests: a store in a temporary directory and
a way to drop messages into a Maildir as delivery (or another program) does."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pigeon.mailstore.mailbox import MailStore, UserMail
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
