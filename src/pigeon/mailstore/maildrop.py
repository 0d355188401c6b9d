"""A Maildir as a POP3 maildrop: its messages, their sizes and unique ids, removal.

    drop = scan(maildir)                         # [DropMessage], oldest first
    with open_message(maildir, drop[0]) as f:    # the file, wherever it is now
        ...
    failures = remove(maildir, [drop[2]])        # unlink, then fsync new/ and cur/

Contract:
  * The maildrop is every message file in new/ and cur/ (RFC 1939 has no
    folders), oldest first: ordered by the delivery time at the start of
    Maildir names, then by name. Files whose names start with "." are not
    messages.
  * A message's unique id (POP3 UIDL, RFC 1939 §7) is its base name: the
    file name without the ":2," info (mailstore/flags.py), so it stays the
    same when a reader moves the file from new/ to cur/ or changes its
    flags, across sessions and restarts. RFC 1939 allows 1 to 70 octets of
    0x21-0x7E: a base outside that (a long host name) is given as the
    SHA-1 of the base instead (40 hex digits, as stable).
  * Its size is the one POP3 sends, every line ended by CRLF: the `,W=`
    field of the name when present (local delivery writes it), else
    counted from the file (pigeon.proto.pop3_content.crlf_size).
  * `open_message` finds the file by its base, in cur/ or new/, when it
    moved since the scan; FileNotFoundError when it is gone.
  * `remove` unlinks the files (one that is gone already counts as
    removed: another reader deleted it), then fsyncs new/ and cur/ so the
    removal is durable; it returns how many could not be removed.
  * Blocking file-system calls: call from a worker thread.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pigeon.fsutil import fsync_dir
from pigeon.mailstore.flags import parse_info
from pigeon.proto.pop3_content import crlf_size

__all__ = ["DropMessage", "open_message", "remove", "scan", "unique_id"]

_VSIZE = re.compile(r",W=(\d+)")
_UID_OK = re.compile(r"[\x21-\x7e]{1,70}")
_SUBDIRS = ("cur", "new")
_READ = 1 << 20  # octets read at a time to count a size


@dataclass(frozen=True, slots=True)
class DropMessage:
    base: str  # the Maildir base name (no ":2," info)
    name: str  # the file name at the scan
    subdir: str  # "new" or "cur" at the scan
    size: int  # octets with CRLF line endings
    uid: str  # POP3 UIDL


def unique_id(base: str) -> str:
    """The UIDL of a message with this base name (module contract)."""
    if _UID_OK.fullmatch(base):
        return base
    return hashlib.sha1(base.encode("utf-8", "surrogateescape")).hexdigest()


_TIME = re.compile(r"(\d+)\.(?:M(\d+))?")


def _order(name: str) -> tuple[int, int, str]:
    """Delivery time (seconds, then microseconds, mailstore/names.py), then the name."""
    m = _TIME.match(name)
    if m is None:
        return (0, 0, name)
    return (int(m.group(1)), int(m.group(2) or 0), name)


def scan(maildir: Path | str) -> list[DropMessage]:
    """The maildrop now (module contract); OSError when new/ or cur/ cannot be read."""
    found: list[tuple[str, str]] = []
    for sub in _SUBDIRS:
        try:
            names = os.listdir(os.path.join(maildir, sub))
        except FileNotFoundError:
            continue  # no mail delivered yet: an empty maildrop
        found += [(name, sub) for name in names if not name.startswith(".")]
    found.sort(key=lambda item: _order(item[0]))
    out = []
    for name, sub in found:
        base, _ = parse_info(name)
        size = _size(os.path.join(maildir, sub, name), base)
        if size is not None:
            out.append(DropMessage(base, name, sub, size, unique_id(base)))
    return out


def _size(path: str, base: str) -> int | None:
    m = _VSIZE.search(base)
    if m:
        return int(m.group(1))
    try:
        with open(path, "rb") as f:
            return crlf_size(iter(lambda: f.read(_READ), b""))  # never the file whole
    except FileNotFoundError:
        return None  # removed meanwhile by another reader
    except IsADirectoryError:
        return None


def _locate(maildir: Path | str, message: DropMessage) -> str | None:
    path = os.path.join(maildir, message.subdir, message.name)
    if os.path.exists(path):
        return path
    for sub in _SUBDIRS:  # moved (new/ -> cur/) or its flags changed
        try:
            names = os.listdir(os.path.join(maildir, sub))
        except FileNotFoundError:
            continue
        for name in names:
            if parse_info(name)[0] == message.base:
                return os.path.join(maildir, sub, name)
    return None


def open_message(maildir: Path | str, message: DropMessage) -> BinaryIO:
    """The message's file, opened for reading (module contract)."""
    path = _locate(maildir, message)
    if path is None:
        raise FileNotFoundError(errno.ENOENT, "message gone", message.base)
    return open(path, "rb")


def remove(maildir: Path | str, messages: Iterable[DropMessage], *, fsync: bool = True) -> int:
    """Unlink `messages` and make it durable; how many could not be removed."""
    failures = 0
    for message in messages:
        path = _locate(maildir, message)
        if path is None:
            continue  # gone already
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError:
            failures += 1
    if fsync:
        for sub in _SUBDIRS:
            try:
                fsync_dir(os.path.join(maildir, sub))
            except FileNotFoundError:
                pass
            except OSError:
                failures += 1  # not durable: say so
    return failures
