"""The mailbox tree's format stamp (mailstore/layout.py): the tree of pigeon
0.1.0 is upgraded once, a new one is stamped, a newer one is refused, and a
downgrade takes the stamp away again."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import pigeon
from pigeon.dataformat import FormatError
from pigeon.mailstore.layout import (
    MAILBOXES,
    STAMP,
    downgrade_mailboxes,
    mailbox_format,
    open_mailboxes,
)


def upgrade_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "upgraded the mailbox" in r.getMessage()]


def test_the_tree_of_0_1_0_is_upgraded_once(tmp_path, datadir_0_1_0, caplog):
    datadir_0_1_0(tmp_path / "data")
    root = tmp_path / "data" / "mailboxes"
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert mailbox_format(root) == (0, "")
    caplog.set_level(logging.INFO, logger="pigeon")
    assert open_mailboxes(root) == 0
    assert upgrade_lines(caplog) == [
        f"upgraded the mailbox directory {root} from format 0 to format 1 (pigeon 0.2.0)"
    ]
    assert mailbox_format(root) == (1, pigeon.__version__)
    assert oct((root / STAMP).stat().st_mode & 0o777) == "0o600"
    # The Maildirs are untouched: the stamp is the only new entry.
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == sorted([*before, Path(STAMP)])
    caplog.clear()
    assert open_mailboxes(root) is None and upgrade_lines(caplog) == []


@pytest.mark.parametrize("exists", [False, True])
def test_a_missing_or_empty_tree_is_made_in_the_current_format(tmp_path, exists, caplog):
    root = tmp_path / "mailboxes"
    if exists:
        root.mkdir()
    assert mailbox_format(root) is None
    caplog.set_level(logging.INFO, logger="pigeon")
    assert open_mailboxes(root) is None
    assert mailbox_format(root) == (MAILBOXES.current, pigeon.__version__)
    if not exists:
        assert oct(root.stat().st_mode & 0o777) == "0o700"
    assert upgrade_lines(caplog) == []


def test_a_newer_tree_is_refused_in_one_line(tmp_path):
    root = tmp_path / "mailboxes"
    root.mkdir()
    (root / STAMP).write_text("pigeon mailboxes format 4 written-by 0.8.0\n")
    with pytest.raises(FormatError) as ei:
        open_mailboxes(root)
    text = str(ei.value)
    assert "\n" not in text
    assert f"mailbox directory {root} has format 4 (written by pigeon 0.8.0)" in text
    assert "run pigeon 0.8.0 or newer" in text
    assert (root / STAMP).read_text() == "pigeon mailboxes format 4 written-by 0.8.0\n"


def test_a_downgrade_to_0_takes_the_stamp_away(tmp_path):
    root = tmp_path / "mailboxes"
    (root / "example.test" / "alice" / "new").mkdir(parents=True)
    open_mailboxes(root)
    assert downgrade_mailboxes(root, 0) == 1
    assert not (root / STAMP).exists() and mailbox_format(root) == (0, "")
    assert downgrade_mailboxes(root, 0) is None  # nothing left to do
