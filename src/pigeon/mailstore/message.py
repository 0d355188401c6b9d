"""One message of a Maildir as the readers see it: `MessageInfo`.

Contract:
  * A `MessageInfo` is immutable: a flag change makes a new one (so
    sessions may share them, mailstore/state.py). Fields: `uid`, `modseq`,
    `name` (its file name in cur/), `flags` (frozenset of IMAP flags:
    "\\Seen"... and keywords), `base` (the unique name before `:2,`: the
    POP3 UIDL), `letters` (the flag letters after `:2,`).
  * `size` is the message's size with CRLF line endings (RFC 9051
    RFC822.SIZE): the `,W=` field of the name when there is one, else
    computed once by reading the file. `internaldate` is the time in the
    unique name's leading seconds (Maildir names begin with the delivery
    time; pigeon's APPEND names the file after the given date), else the
    file's mtime (one stat, once). Both are computed lazily: a SELECT of a
    large mailbox costs no file access.
  * `to_crlf(data)` gives a Maildir file's bytes with CRLF line endings (files
    hold LF, delivery/maildir.py; a CRLF already there is kept).
"""

from __future__ import annotations

import datetime as _dt
import os
import re

__all__ = ["MessageInfo", "to_crlf"]

_LONE_LF = re.compile(rb"(?<!\r)\n")


def to_crlf(data: bytes) -> bytes:
    """`data` with every bare LF made CRLF."""
    return _LONE_LF.sub(b"\r\n", data)


def _size_field(base: str, key: str) -> int | None:
    at = base.find(key)
    if at < 0:
        return None
    end = base.find(",", at + 3)
    digits = base[at + 3 : end if end >= 0 else len(base)]
    return int(digits) if digits.isdigit() else None


class MessageInfo:
    """One message (see the module contract)."""

    __slots__ = ("uid", "modseq", "name", "flags", "_maildir", "_size", "_date")

    def __init__(self, uid: int, modseq: int, name: str, flags: frozenset[str], maildir: str):
        self.uid = uid
        self.modseq = modseq
        self.name = name
        self.flags = flags
        self._maildir = maildir
        self._size: int | None = None
        self._date: _dt.datetime | None = None

    def __repr__(self) -> str:
        return f"MessageInfo(uid={self.uid}, modseq={self.modseq}, name={self.name!r})"

    @property
    def base(self) -> str:
        return self.name.partition(":")[0]

    @property
    def letters(self) -> str:
        _, colon, info = self.name.partition(":")
        return info[2:] if colon and info.startswith("2,") else ""

    @property
    def path(self) -> str:
        return os.path.join(self._maildir, "cur", self.name)

    @property
    def size(self) -> int:
        if self._size is None:
            size = _size_field(self.base, ",W=")
            if size is None:
                with open(self.path, "rb") as f:
                    size = len(to_crlf(f.read()))
            self._size = size
        return self._size

    @property
    def internaldate(self) -> _dt.datetime:
        if self._date is None:
            seconds, dot, _ = self.base.partition(".")
            if dot and seconds.isdigit():
                stamp = float(seconds)
            else:
                stamp = os.stat(self.path).st_mtime
            self._date = _dt.datetime.fromtimestamp(stamp, _dt.UTC)
        return self._date

    def with_change(self, modseq: int, name: str, flags: frozenset[str]) -> MessageInfo:
        """The same message under a new name and modseq (flags changed)."""
        other = MessageInfo(self.uid, modseq, name, flags, self._maildir)
        other._size, other._date = self._size, self._date
        return other
