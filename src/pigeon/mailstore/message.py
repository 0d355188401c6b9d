"""One message of a Maildir as the readers see it: `MessageInfo`.

Contract:
  * A `MessageInfo` is immutable (a tuple): a flag change makes a new one
    (so sessions may share them, mailstore/state.py). Fields: `uid`,
    `modseq`, `name` (its file name in cur/), `flags` (frozenset of IMAP
    flags: "\\Seen"... and keywords), `maildir`; derived: `base` (the
    unique name before `:2,`: the POP3 UIDL), `letters` (the flag letters
    after `:2,`), `path`.
  * `size` is the message's size with CRLF line endings (RFC 9051
    RFC822.SIZE): the `,W=` field of the name when there is one, else
    computed by reading the file (cached). `internaldate` is the time in the
    unique name's leading seconds (Maildir names begin with the delivery
    time; pigeon's APPEND names the file after the given date), else the
    file's mtime (one stat, cached). Both are computed when asked for: a
    SELECT of a large mailbox costs no file access.
  * `to_crlf(data)` gives a Maildir file's bytes with CRLF line endings (files
    hold LF, delivery/maildir.py; a CRLF already there is kept).
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import re
from collections.abc import Callable
from typing import NamedTuple

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


class MessageInfo(NamedTuple):
    """One message (see the module contract). A tuple: a folder of 100,000
    is made at every start (`make` builds one without a Python call)."""

    uid: int
    modseq: int
    name: str
    flags: frozenset[str]
    maildir: str

    @property
    def base(self) -> str:
        return self.name.partition(":")[0]

    @property
    def letters(self) -> str:
        _, colon, info = self.name.partition(":")
        return info[2:] if colon and info.startswith("2,") else ""

    @property
    def path(self) -> str:
        return os.path.join(self.maildir, "cur", self.name)

    @property
    def size(self) -> int:
        size = _size_field(self.base, ",W=")
        return size if size is not None else _counted_size(self.path)

    @property
    def internaldate(self) -> _dt.datetime:
        seconds, dot, _ = self.base.partition(".")
        if dot and seconds.isdigit():
            return _dt.datetime.fromtimestamp(int(seconds), _dt.UTC)
        return _mtime(self.path)

    def with_change(self, modseq: int, name: str, flags: frozenset[str]) -> MessageInfo:
        """The same message under a new name and modseq (flags changed)."""
        return make((self.uid, modseq, name, flags, self.maildir))


#: MessageInfo from a (uid, modseq, name, flags, maildir) tuple, in C.
make: Callable[[tuple[int, int, str, frozenset[str], str]], MessageInfo] = functools.partial(
    tuple.__new__, MessageInfo
)


# A file without ,W= in its name (written by another program) is read once
# for its size, a name not starting with the time is stat()ed once: cached
# by path (a flag change renames it: computed again, rarely).
@functools.lru_cache(maxsize=50_000)
def _counted_size(path: str) -> int:
    with open(path, "rb") as f:
        return len(to_crlf(f.read()))


@functools.lru_cache(maxsize=50_000)
def _mtime(path: str) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(os.stat(path).st_mtime, _dt.UTC)
