"""Message content in a plain file: a `MessageContent` the delivery layer makes itself.

Contract:
  * `FileMessage(path)` is a `MessageContent` (pigeon/queue/api.py) over a
    file: `open()` returns an unbuffered binary stream positioned at the
    message (a queue file's preamble, if any, is skipped: pigeon/msgfile.py);
    `size` is the message's length. A file that cannot be opened is a
    StoreError (`.storage_fault` when the storage failed), as the queue's
    own content is.
  * Used for the 7-bit conversion the SMTP client sends (delivery/downgrade.py)
    and for a request whose content a caller names by path
    (`DeliveryRequest` wraps a path in a FileMessage: tools and tests that
    hold a file); the queue manager hands out the store's content.
  * `remove()` deletes the file (our own temporary files only).
  * `PrefixedMessage(prefix, content)` is `content` with header fields put
    on top (the ARC set of a forwarded copy, delivery/sealing.py): `open()`
    streams the prefix, then the content's own stream; nothing is copied.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

from pigeon.msgfile import open_message
from pigeon.queue.api import MessageContent
from pigeon.queue.health import is_storage_fault
from pigeon.vocab import StoreError

__all__ = ["FileMessage", "PrefixedMessage"]


class FileMessage:
    """A `MessageContent` over the file at `path` (see the module contract)."""

    __slots__ = ("path", "_size")

    def __init__(self, path: Path | str, size: int | None = None) -> None:
        self.path = Path(path)
        self._size = size

    @property
    def size(self) -> int:
        if self._size is None:
            fh = self.open()
            fh.close()
        return self._size or 0

    def open(self) -> BinaryIO:
        try:
            fh, self._size = open_message(self.path, buffering=0)
        except OSError as exc:
            raise StoreError(
                f"content {self.path}: {exc.strerror or exc}", storage_fault=is_storage_fault(exc)
            ) from exc
        return fh

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass


class _Joined(io.RawIOBase):
    """`prefix`, then what `rest` reads (closed with it)."""

    def __init__(self, prefix: bytes, rest: BinaryIO) -> None:
        self._prefix = memoryview(prefix)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._rest.close()
        finally:
            super().close()


class PrefixedMessage:
    """A `MessageContent`: header fields on top of another content (module contract)."""

    __slots__ = ("prefix", "content")

    def __init__(self, prefix: bytes, content: MessageContent) -> None:
        self.prefix = prefix
        self.content = content

    @property
    def size(self) -> int:
        return len(self.prefix) + self.content.size

    def open(self) -> BinaryIO:
        return io.BufferedReader(_Joined(self.prefix, self.content.open()))
