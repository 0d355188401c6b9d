"""The queue's content file format: a preamble carrying the envelope, then the message.

It sits below pigeon.queue (docs/architecture.md, "Layers") because
readers of a content file outside the store use `open_message()` too: a
delivery agent or the SMTP client handed a file, the 7-bit conversion's
copy in /tmp.

Why: queue.db alone knew which message a `msg/<id>` file was and to whom it
went. Losing the database (deleted, truncated, replaced by a corrupt copy)
lost the queue, and start-up then deleted every file as an orphan. Now each
file carries its own envelope, so the queue can be rebuilt from the files
alone (`QueueStore.recover()`, `pigeon queue rebuild`), and the id of the
database it was written under, so recovery can tell "the database lost
track of this file" from "this file's commit never finished" (the rules are
in queue/recovery.py).

Layout of `msg/<id>` (and of a spool spilled to `tmp/<id>`)::

    #pigeon-queue-file v1 store=<32 hex> flags=<2 hex> envelope=<8 hex> crc32=<8 hex>\\n
    <envelope JSON, exactly `envelope` octets>\\n
    <the message: CRLF line ends, our Received: field first>

  * The first line has a fixed length (`HEADER_LEN`), so the store id can
    be rewritten in place (`rewrite_store_id`) when a rebuild adopts a file.
    The JSON has no raw line breaks (json.dumps escapes them), so
    `head -2 msg/<id>` shows an operator the whole preamble.
  * `store` is the random id of the queue.db the file was committed under
    (its `meta` table). `crc32` covers the JSON octets only.
  * `flags` bit 0 (`FLAG_DRAFT`): the envelope is the one known when DATA
    began (a spool that spilled to disk writes its preamble then): `size`
    and `eight_bit` are not final, so a rebuild takes the size from the file
    and scans the message for 8-bit octets. Without it the envelope is the
    one committed (a spool held in memory gets its preamble at commit).
  * The JSON is `Envelope.to_dict()`, or `null` when the writer gave no
    envelope (only tests do): such a file cannot be rebuilt.
  * A file without the preamble (its first octets are not `MAGIC`) is a
    file of the version before this format: the whole file is the message.
    Those files exist only together with their queue rows.
  * Versioning: `v1` is the only version; a reader refuses any other
    (`PreambleError`; a higher one is named "written by a newer pigeon"),
    so recovery quarantines such a file rather than guessing, and delivery
    defers it. The preamble version is part of the queue's format
    (queue/schema.py, `QUEUE`): a release that writes another preamble
    bumps that format, so an older pigeon refuses the whole queue at
    start-up before it meets such a file.

Readers: the store hands queued content out as a stream that starts past
the preamble (`ContentStore.content()`, queue/files.py, which uses
`open_message()`); a reader given a file opens it with `open_message()`
(or `read_message()`), which skips the preamble and works as well on a
file without one (a converted copy in /tmp, a file of the older format).
Nobody reads a content file with plain open().

Cost: the preamble adds no system call and no fsync (`write_all`). A spool
held in memory gets it in the same writev as its content at commit; a
spool that spills gets it in the writev that moves its content to tmp/
(strace, 100 commits of 2 KB and of 200 KB messages: the same system
calls as without the preamble, a writev where a write was). A reader reads
the first line with its first read and seeks past the JSON.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "MAGIC",
    "HEADER_LEN",
    "FLAG_DRAFT",
    "Preamble",
    "PreambleError",
    "encode",
    "new_store_id",
    "read_preamble",
    "open_message",
    "read_message",
    "has_eight_bit",
    "rewrite_store_id",
    "write_all",
]

MAGIC = b"#pigeon-queue-file "
VERSION = 1
FLAG_DRAFT = 0x01
_HEADER = b"#pigeon-queue-file v%d store=%s flags=%02x envelope=%08x crc32=%08x\n"
_HEADER_RE = re.compile(
    rb"#pigeon-queue-file v(\d+) store=([0-9a-f]{32}) flags=([0-9a-f]{2}) "
    rb"envelope=([0-9a-f]{8}) crc32=([0-9a-f]{8})\n"
)
HEADER_LEN = len(_HEADER % (VERSION, b"0" * 32, 0, 0, 0))
STORE_ID_OFFSET = len(b"#pigeon-queue-file v1 store=")
#: An envelope bigger than this is not believed (a damaged length field
#: must not make recovery allocate gigabytes). 50,000 recipients fit.
MAX_ENVELOPE = 64 * 1024 * 1024
_CHUNK = 1024 * 1024


class PreambleError(ValueError):
    """The preamble cannot be read. `fragment`: the file is shorter than the
    fixed first line and holds nothing but a piece of it (no message octet:
    the debris of a write cut short by a crash)."""

    def __init__(self, reason: str, *, fragment: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fragment = fragment


@dataclass(frozen=True, slots=True)
class Preamble:
    """What `read_preamble` found. `envelope` is None when the JSON is
    `null`, and `envelope_error` says why when the JSON is damaged (the first
    line, hence `store_id`, was still readable)."""

    store_id: str
    draft: bool
    envelope: dict[str, Any] | None
    offset: int  # where the message starts
    envelope_error: str = ""


def new_store_id() -> str:
    """A fresh random store id (32 hex digits)."""
    return secrets.token_hex(16)


def encode(store_id: str, envelope_json: bytes, *, draft: bool = False) -> bytes:
    """The preamble for a message of the store `store_id` (see the layout)."""
    if len(store_id) != 32:
        raise ValueError("store id must be 32 hex digits")
    return (
        _HEADER
        % (
            VERSION,
            store_id.encode("ascii"),
            FLAG_DRAFT if draft else 0,
            len(envelope_json),
            zlib.crc32(envelope_json),
        )
        + envelope_json
        + b"\n"
    )


def _parse_header(head: bytes) -> tuple[int, str, int, int, int] | None:
    """(version, store id, flags, JSON length, crc) from the first octets of
    a file; None when the file has no preamble; PreambleError when damaged."""
    if not head.startswith(MAGIC):
        if len(head) < len(MAGIC) and MAGIC.startswith(head):  # also b""
            raise PreambleError(
                f"file cut short inside its first line ({len(head)} octets)", fragment=True
            )
        return None
    if len(head) < HEADER_LEN:
        raise PreambleError(
            f"file cut short inside its first line ({len(head)} octets)", fragment=True
        )
    m = _HEADER_RE.match(head, 0, HEADER_LEN)
    if m is None:
        raise PreambleError("damaged first line")
    version = int(m.group(1))
    if version > VERSION:
        # A newer pigeon's file: refused, never guessed at (docs/upgrade.md).
        raise PreambleError(
            f"preamble format v{version} is newer than this pigeon's (v{VERSION}): "
            "written by a newer pigeon"
        )
    if version != VERSION:
        raise PreambleError(f"unknown format version {version}")
    return (
        version,
        m.group(2).decode("ascii"),
        int(m.group(3), 16),
        int(m.group(4), 16),
        int(m.group(5), 16),
    )


def read_preamble(fh: BinaryIO) -> Preamble | None:
    """Read the preamble of the open file `fh` (from its start). None: the
    file has none (older format). PreambleError: the first line is damaged,
    or the file is a fragment. A damaged envelope JSON is reported in
    `Preamble.envelope_error` (the store id is still good)."""
    fh.seek(0)
    head = fh.read(HEADER_LEN)
    parsed = _parse_header(head)
    if parsed is None:
        return None
    _, store_id, flags, length, crc = parsed
    offset = HEADER_LEN + length + 1

    def damaged(reason: str) -> Preamble:
        return Preamble(store_id, bool(flags & FLAG_DRAFT), None, offset, reason)

    if length > MAX_ENVELOPE:
        return damaged(f"envelope length {length} is implausible")
    raw = fh.read(length + 1)
    if len(raw) < length + 1:
        return damaged("file cut short inside the envelope")
    if raw[-1:] != b"\n":
        return damaged("no line end after the envelope")
    raw = raw[:-1]
    if zlib.crc32(raw) != crc:
        return damaged("envelope checksum mismatch")
    try:
        envelope = json.loads(raw)
    except ValueError as exc:
        return damaged(f"envelope is not JSON: {exc}")
    if envelope is not None and not isinstance(envelope, dict):
        return damaged("envelope is not a JSON object")
    return Preamble(store_id, bool(flags & FLAG_DRAFT), envelope, offset)


def _skip_preamble(fh: BinaryIO, path: Path | str) -> None:
    """Position `fh` (at offset 0) on the first octet of the message."""
    head = fh.read(HEADER_LEN)
    if not head:
        return  # an empty file: an empty message
    try:
        parsed = _parse_header(head)
    except PreambleError as exc:
        # An OSError, so delivery agents treat it like an unreadable file
        # (a temporary failure); the operator sees the reason in the log.
        raise OSError(
            errno.EBADMSG, f"damaged queue file preamble: {exc.reason}", str(path)
        ) from None
    fh.seek(0 if parsed is None else HEADER_LEN + parsed[3] + 1)


def open_message(path: Path | str, *, buffering: int = -1) -> tuple[BinaryIO, int]:
    """Open a content file for reading, positioned on the message (past the
    preamble, if any); return (file, message length in octets).

    Works on any message file: a queue file with or without a preamble, or
    a plain copy (the 7-bit conversion in /tmp). OSError as open() raises
    it; a damaged preamble is OSError(EBADMSG)."""
    fh = open(path, "rb", buffering=buffering)
    try:
        _skip_preamble(fh, path)
        size = os.fstat(fh.fileno()).st_size - fh.tell()
    except BaseException:
        fh.close()
        raise
    return fh, max(size, 0)


def read_message(path: Path | str) -> bytes:
    """The whole message of a content file, without its preamble."""
    fh, _ = open_message(path)
    with fh:
        return fh.read()


def has_eight_bit(fh: BinaryIO) -> bool:
    """True when the rest of `fh` holds an octet > 127 (streamed, bounded memory)."""
    while chunk := fh.read(_CHUNK):
        if not chunk.isascii():
            return True
    return False


def write_all(fd: int, parts: Sequence[bytes | bytearray | memoryview]) -> None:
    """Write `parts` (preamble, content...) to `fd` with one writev; a short
    write (quota, signal) writes the rest. One system call, as a single
    write of the content alone was."""
    sizes = [len(p) for p in parts]
    total, done = sum(sizes), os.writev(fd, parts)
    while done < total:
        skip, rest = done, []
        for part, size in zip(parts, sizes):
            if skip >= size:
                skip -= size
                continue
            rest.append(memoryview(part)[skip:])
            skip = 0
        done += os.writev(fd, rest)


def copy_from(src: int, offset: int, dst: int) -> None:
    """Append everything of `src` from `offset` on to `dst` (at its current
    position), in the kernel where it can (copy_file_range), so a big
    message is not read into memory; in pieces of 1 MiB elsewhere."""
    end = os.fstat(src).st_size
    in_kernel = hasattr(os, "copy_file_range")
    while offset < end:
        count = end - offset
        done = 0
        if in_kernel:
            try:
                done = os.copy_file_range(src, dst, count, offset)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                in_kernel = False
        if not in_kernel:
            done = _copy_plain(src, offset, dst, count)
        if done == 0:
            raise OSError(errno.EIO, "source file ended early")
        offset += done


def _copy_plain(src: int, offset: int, dst: int, count: int) -> int:
    data = os.pread(src, min(count, _CHUNK), offset)
    write_all(dst, [data])
    return len(data)


def rewrite_store_id(path: Path | str, store_id: str, *, fsync: bool) -> None:
    """Give the file at `path` (which has a preamble) the store id `store_id`:
    the rebuild that adopted it makes it a file of the current database, so
    later recoveries judge it by the ordinary rules (queue/recovery.py)."""
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.pwrite(fd, store_id.encode("ascii"), STORE_ID_OFFSET)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
