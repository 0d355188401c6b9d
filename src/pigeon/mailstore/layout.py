"""The format version of the mailbox tree (`<data_dir>/mailboxes/`).

Why it has one: the Maildirs themselves are the standard format other
programs (MUAs, Dovecot) read, but where a mailbox lives (`paths`: the
%-encoded domain and local part) is pigeon's own choice, and the
per-mailbox state POP3 and IMAP will keep (UIDs) will be pigeon's own files.
A release that changes either must not have an older pigeon deliver into
a tree it lays out differently (split mailboxes, lost UIDs): so the tree
carries a version like the queue and the account store
(pigeon/dataformat.py; docs/upgrade.md, "Formats").

Contract:
  * `MAILBOXES` is the format; its stamp is the file `.pigeon-format` at the
    top of the tree (mode 0600; a mailbox name can never start with ".",
    `paths.safe_component`, so it never meets a domain's directory):
      format 0   release 0.1.0: no stamp
      format 1   release 0.2.0: the same layout, the stamp
  * `open_mailboxes(root)` is called by the serving pigeon (the only writer
    of the tree, under the data-directory lock) at start-up: a newer stamp
    is refused (`FormatError`, one line naming the file, both versions and
    the release to run); a tree without a stamp holding mailboxes is format
    0 and is upgraded (the stamp written atomically, one INFO line; a crash
    before the rename leaves format 0, upgraded again at the next start); a
    missing or empty tree gets the current stamp (and is created, 0700).
    Returns the version upgraded from, or None.
  * `mailbox_format(root)` (version, written_by) as found, for
    `pigeon data show`; `downgrade_mailboxes(root, target)` for
    `pigeon data downgrade` (format 0: the stamp removed).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pigeon.dataformat import Format, FormatError, read_stamp, write_stamp
from pigeon.fsutil import fsync_dir

__all__ = ["MAILBOXES", "STAMP", "downgrade_mailboxes", "mailbox_format", "open_mailboxes"]

log = logging.getLogger("pigeon")

MAILBOXES = Format("mailboxes", "mailbox directory", current=1, oldest_readable=0)
STAMP = ".pigeon-format"


def mailbox_format(root: Path) -> tuple[int, str] | None:
    """(version, written_by) of the tree at `root`; None when there is no
    tree or an empty one (nothing to be of any format)."""
    root = Path(root)
    stamp = read_stamp(root / STAMP, MAILBOXES)
    if stamp is not None:
        return stamp
    try:
        entries = [e for e in os.listdir(root) if e != f"{STAMP}.tmp"]
    except FileNotFoundError:
        return None
    return (0, "") if entries else None


def open_mailboxes(root: Path) -> int | None:
    """See the contract: check, upgrade or stamp the tree at `root`."""
    root = Path(root)
    found = mailbox_format(root)
    if found is None:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_stamp(root / STAMP, MAILBOXES, MAILBOXES.current)
        return None
    version, written_by = found
    if MAILBOXES.decide(version, owner=True, path=root, written_by=written_by) == "current":
        return None
    # Format 0 -> 1 is the stamp alone; a later step that moves mailboxes
    # goes here, before the stamp (each move atomic, each one idempotent).
    write_stamp(root / STAMP, MAILBOXES, MAILBOXES.current)
    log.info("%s", MAILBOXES.upgraded_line(root, version))
    return version


def downgrade_mailboxes(root: Path, target: int) -> int | None:
    """Back to format `target` (`pigeon data downgrade`); the version it had,
    None when there was nothing to change."""
    root = Path(root)
    found = mailbox_format(root)
    if found is None or found[0] <= target:
        return None
    if found[0] > MAILBOXES.current:
        raise FormatError(MAILBOXES.newer_line(root, found[0], found[1]))
    if target == 0:
        (root / STAMP).unlink()
        fsync_dir(root)
    else:
        write_stamp(root / STAMP, MAILBOXES, target)
    return found[0]
