"""The `pigeon-uidlist` file: IMAP UIDs and CONDSTORE modseqs of one Maildir.

Contract (the format is documented in docs/imap.md, "The uidlist file"):
  * One file per Maildir, `<maildir>/pigeon-uidlist`, holds UIDVALIDITY,
    UIDNEXT, HIGHESTMODSEQ (RFC 9051 §2.3.1.1, RFC 7162 §3.1) and for every
    message its UID, its modseq and its file name in cur/ as last seen (the
    unique base before `:2,` is the message's identity; the flags after it
    tell, at the next start, whether another program changed them meanwhile,
    which must raise the modseq).
  * The file is a header line, then the records of a full write, then
    records appended since (a journal): `+<uid> <modseq> <name>` (a message
    got a UID, or its flags and modseq changed), `-<uid> <modseq>` (expunged). A later
    record for a UID replaces the earlier one. `UidList.load(path)` replays
    it once; `UidList.append(path, lines)` adds records (write + fsync: a
    UID is on disk before any client sees it); `UidList.write(path)` writes
    the whole state (tmp, fsync, rename, directory fsync), which is also
    how the journal is compacted (`needs_compaction`).
  * A torn last line (no newline: a crash during an append) is ignored and
    the caller rewrites the file. Any other damage (bad header, bad record,
    a newer format) is `UidListCorrupt`: the caller starts again with a new
    UIDVALIDITY (RFC 9051 §2.3.1.1: the UIDs may then be reused only under a
    new UIDVALIDITY) and logs a warning. A missing file is None.
  * `new_uidvalidity(previous)` is greater than any value this process gave
    before and than `previous`: the time in seconds, or one more.
  * Blocking file I/O; no locking: the caller (mailstore/state.py) holds the
    per-Maildir lock around every use.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from pigeon.fsutil import write_atomically, write_synced

__all__ = ["FILENAME", "VERSION", "UidList", "UidListCorrupt", "new_uidvalidity"]

FILENAME = "pigeon-uidlist"
VERSION = 1
_MAGIC = "pigeon-uidlist"
#: One record: "+<uid> <modseq> <name>" or "-<uid> <modseq>" (parsed in C:
#: a 100,000-message list is read at every start).
_NUM = r"([1-9][0-9]{0,18})"
_RECORD = re.compile(rf"^(?:\+{_NUM} {_NUM} ([^\n]+)|-{_NUM} {_NUM})$", re.M)


class UidListCorrupt(ValueError):
    """The file exists but cannot be trusted (see the module contract)."""


_last_uidvalidity = 0
_uidvalidity_lock = threading.Lock()


def new_uidvalidity(previous: int = 0) -> int:
    """A UIDVALIDITY never given before by this process, above `previous`
    (a non-zero 32-bit number, RFC 9051 §2.3.1.1)."""
    global _last_uidvalidity
    with _uidvalidity_lock:
        value = max(int(time.time()), _last_uidvalidity + 1, previous + 1)
        if value >= 2**32:
            value = 1  # after the year 2106: wrap (still differs from previous)
        _last_uidvalidity = value
        return value


@dataclass
class UidList:
    """The state the file holds: `entries` maps a UID to (modseq, name), in UID order."""

    uidvalidity: int
    uidnext: int = 1
    highestmodseq: int = 1
    entries: dict[int, tuple[int, str]] = field(default_factory=dict)
    #: Records in the file past its last full write (for compaction).
    journal_lines: int = 0
    #: The file ended in a torn line: rewrite it before appending.
    torn: bool = False

    @classmethod
    def load(cls, path: str) -> UidList | None:
        """Replay the file at `path`; None if there is none (see the contract)."""
        try:
            with open(path, encoding="utf-8", newline="\n") as f:
                text = f.read()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise UidListCorrupt(f"{path}: unreadable: {e}") from e
        complete = text.rfind("\n") + 1  # past the last newline: a torn line
        torn = complete < len(text)
        first, newline, _ = text.partition("\n")
        if not newline:
            raise UidListCorrupt(f"{path}: empty")
        head = first.split(" ")
        if len(head) != 5 or head[0] != _MAGIC:
            raise UidListCorrupt(f"{path}: not a uidlist header: {first[:80]!r}")
        try:
            version, validity, uidnext, highest = (int(x) for x in head[1:])
        except ValueError:
            raise UidListCorrupt(f"{path}: bad header numbers: {first[:80]!r}") from None
        if version != VERSION:
            raise UidListCorrupt(f"{path}: format {version}, this pigeon reads {VERSION}")
        if not 0 < validity < 2**32 or uidnext < 1 or highest < 1:
            raise UidListCorrupt(f"{path}: header values out of range")
        records = _RECORD.findall(text, len(first) + 1, complete)
        if len(records) != text.count("\n", 0, complete) - 1:
            raise UidListCorrupt(f"{path}: bad record")
        by_uid: dict[int, tuple[int, str]] = {}
        for plus_uid, plus_modseq, name, minus_uid, minus_modseq in records:
            if plus_uid:
                uid, modseq = int(plus_uid), int(plus_modseq)
                by_uid[uid] = (modseq, name)
            else:
                uid, modseq = int(minus_uid), int(minus_modseq)
                by_uid.pop(uid, None)
            if uid >= uidnext:
                uidnext = uid + 1
            if modseq > highest:
                highest = modseq
        entries = dict(sorted(by_uid.items()))
        return cls(validity, uidnext, highest, entries, len(records) - len(entries), torn)

    def header(self) -> str:
        return f"{_MAGIC} {VERSION} {self.uidvalidity} {self.uidnext} {self.highestmodseq}\n"

    def write(self, path: str, rows: Iterable[tuple[int, int, str]]) -> None:
        """Write the header and `rows` (uid, modseq, name: every live message)
        atomically and durably (see the contract)."""
        parts = [self.header()]
        parts.extend(f"+{uid} {modseq} {name}\n" for uid, modseq, name in rows)
        write_atomically(path, "".join(parts).encode("utf-8"))
        self.journal_lines = 0
        self.torn = False

    def append(self, path: str, lines: list[str]) -> None:
        """Append records (each ending in a newline) durably. The caller
        rewrites a torn file (`write`) before it appends."""
        if not lines:
            return
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            write_synced(fd, "".join(lines).encode("utf-8"))
        finally:
            os.close(fd)
        self.journal_lines += len(lines)

    def needs_compaction(self, live: int) -> bool:
        """More journal than `live` records (and not tiny): rewrite the file."""
        return self.torn or self.journal_lines > max(1000, live)
