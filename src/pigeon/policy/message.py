"""The received message as end-of-data checks see it: a view of the spool.

Contract:
  * `SpoolMessage(spool, header_limit=..., eight_bit=...)` implements
    `pigeon.policy.api.Message` over a `pigeon.queue.api.Spool` at the end
    of the data, before the commit. Nothing is read until a check asks.
  * `header_section()` reads back at most `header_limit` octets
    (`spool.head()`; the driver passes our Received: field's length plus
    `limits.header_size` plus the empty line, the bound the session already
    enforced) and returns every header field up to the empty line that ends
    the section, without it (all of what it read when there is none). It is
    read once and kept.
  * `headers()` is that section parsed by `unfolded_fields` and split at
    each field's first colon: (name, value) pairs, the name without the
    white space before the colon that old clients write (`From :`, RFC 5322
    §4.5.3), the value stripped; a line without a colon is left out. Kept.
  * `MemoryMessage(content)` is the same view over content held in memory
    (the checker process's copy, app/checker.py); `parse_fields(section)`
    is the parsing both use.
  * `content_in_hand()` is the whole content (header section, empty line,
    body) when the header section's read already holds all of it (a small
    message: no second read, no stream), else None; a message without an
    empty line is None too (the caller's general path decides).
  * `body()` is a stream over the octets after the empty line
    (`spool.reader()`: no copy of an in-memory spool, the spilled file
    otherwise); the caller closes it.
  * An error reading back the header section, or opening the body, is a
    `StoreError` (storage_fault: the disk failed under the check, EIO for
    one) raised to the check that asked: the pipeline answers it as the
    commit would (policy/pipeline.py), not as a bug in the check. Reads
    from the body stream itself may still raise OSError.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from pigeon.queue.api import Spool
from pigeon.vocab.errors import StoreError

_END_OF_HEADER = b"\r\n\r\n"


def unfolded_fields(section: bytes) -> list[str]:
    """The header fields, each unfolded onto one line (RFC 5322 §2.2.3)."""
    fields: list[str] = []
    for line in section.decode("utf-8", "replace").split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1] += line
        elif line:
            fields.append(line)
    return fields


def parse_fields(section: bytes) -> list[tuple[str, str]]:
    """(name, value) pairs of a header section, as `headers()` gives them (module contract)."""
    pairs = (f.partition(":") for f in unfolded_fields(section))
    return [(n.rstrip(" \t"), v.strip()) for n, colon, v in pairs if colon]


class SpoolMessage:
    """`Message` over a spool (module contract)."""

    __slots__ = ("_spool", "_limit", "_eight_bit", "_head", "_fields")

    def __init__(self, spool: Spool, *, header_limit: int, eight_bit: bool) -> None:
        self._spool = spool
        self._limit = header_limit
        self._eight_bit = eight_bit
        self._head: bytes | None = None
        self._fields: list[tuple[str, str]] | None = None

    @property
    def queue_id(self) -> str:
        return self._spool.queue_id

    @property
    def size(self) -> int:
        return self._spool.size

    @property
    def eight_bit(self) -> bool:
        return self._eight_bit

    def _read_head(self) -> bytes:
        if self._head is None:
            try:
                self._head = self._spool.head(self._limit)
            except OSError as exc:
                raise StoreError(f"reading the spooled message: {exc}", storage_fault=True) from exc
        return self._head

    def header_section(self) -> bytes:
        head = self._read_head()
        end = head.find(_END_OF_HEADER)
        return head if end == -1 else head[: end + 2]

    def headers(self) -> list[tuple[str, str]]:
        if self._fields is None:
            self._fields = parse_fields(self.header_section())
        return self._fields

    def content_in_hand(self) -> bytes | None:
        head = self._read_head()
        if len(head) >= self._limit or head.find(_END_OF_HEADER) == -1:
            return None  # more may follow what was read; or no body at all
        return head

    def body(self) -> BinaryIO:
        head = self._read_head()
        end = head.find(_END_OF_HEADER)
        start = len(head) if end == -1 else end + len(_END_OF_HEADER)
        try:
            return self._spool.reader(start)
        except OSError as exc:
            raise StoreError(f"reading the spooled message: {exc}", storage_fault=True) from exc


class MemoryMessage:
    """`Message` over the whole content in memory (the checker process's copy,
    app/checker.py): the same header section, fields and body as the
    `SpoolMessage` it was read from."""

    __slots__ = ("_content", "_end", "_fields")

    def __init__(self, content: bytes) -> None:
        self._content = content
        self._end = content.find(_END_OF_HEADER)
        self._fields: list[tuple[str, str]] | None = None

    @property
    def queue_id(self) -> str:
        return ""

    @property
    def size(self) -> int:
        return len(self._content)

    @property
    def eight_bit(self) -> bool:
        return False

    def header_section(self) -> bytes:
        return self._content if self._end == -1 else self._content[: self._end + 2]

    def content_in_hand(self) -> bytes | None:
        return None if self._end == -1 else self._content

    def headers(self) -> list[tuple[str, str]]:
        if self._fields is None:
            self._fields = parse_fields(self.header_section())
        return self._fields

    def body(self) -> BinaryIO:
        start = len(self._content) if self._end == -1 else self._end + len(_END_OF_HEADER)
        return io.BytesIO(self._content[start:])
