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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from pigeon.msgfile import open_message
from pigeon.queue.health import is_storage_fault
from pigeon.vocab import StoreError

__all__ = ["FileMessage"]


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
