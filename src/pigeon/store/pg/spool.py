"""Spools of the PostgreSQL store: a message being received, before its commit.

Contract:
  * `PgSpool` is the `Spool` of pigeon/queue/api.py for pigeon/store/pg:
    content stays in memory up to `SPILL_THRESHOLD` octets (the embedded
    store's threshold, pigeon/queue/spool.py), then spills to an unnamed
    temporary file (O_TMPFILE-like: `tempfile.TemporaryFile`) in
    `spool_dir`. Nothing is durable before the commit, which copies the
    content into the database (pigeon/store/pg/committer.py); a spool
    abandoned by a dead process leaves nothing behind (an unnamed file
    vanishes with its last descriptor), so recovery has no debris to clean.
  * States: open -> committing -> committed, or -> discarded/failed. Only an
    open spool takes writes, fields or a new head; `begin_commit()` is the
    one way into 'committing' (False when the spool is not open, and the
    committer refuses the commit); `finish(ok)` ends it: committed, or
    failed with its content dropped.
  * `size` counts the prepended fields and the replaced head; `head()` and
    `reader()` read what `write()` wrote (the contract of api.Spool).
  * `pieces()` yields the message as committed, in order: prepended fields,
    the replacement head, the rest of what was written; the committer cuts
    it into chunks.
  * Errors: a failing temporary file is a StoreError (`.disk_full` on
    ENOSPC), and the spool is failed.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

from pigeon.queue.health import store_error
from pigeon.queue.model import Envelope
from pigeon.queue.spool import SPILL_THRESHOLD, MemoryContent
from pigeon.vocab.errors import StoreError

__all__ = ["PgSpool"]

_READ = 256 * 1024


class PgSpool:
    def __init__(self, queue_id: str, spool_dir: Path, envelope: Envelope | None = None) -> None:
        self._queue_id = queue_id
        self._dir = spool_dir
        self.envelope = envelope
        self._buf: bytearray | None = bytearray()
        self._file: BinaryIO | None = None
        self._written = 0
        self._fields: list[bytes] = []
        self._head: tuple[int, bytes] | None = None
        self.state = "open"

    @property
    def queue_id(self) -> str:
        return self._queue_id

    @property
    def size(self) -> int:
        extra = sum(map(len, self._fields))
        if self._head is not None:
            extra += len(self._head[1]) - min(self._head[0], self._written)
        return self._written + extra

    def _open_only(self, what: str) -> None:
        if self.state != "open":
            raise StoreError(f"queue_id={self._queue_id} {what}: spool is {self.state}")

    def write(self, data: bytes) -> None:
        self._open_only("write")
        try:
            if self._file is None and self._written + len(data) > SPILL_THRESHOLD:
                self._file = tempfile.TemporaryFile(dir=self._dir, prefix="pigeon-spool-")
                assert self._buf is not None
                self._file.write(self._buf)
                self._buf = None
            if self._file is not None:
                self._file.write(data)
            else:
                assert self._buf is not None
                self._buf += data
        except OSError as e:
            self._drop("failed")
            raise store_error(f"queue_id={self._queue_id} spool write", e) from e
        self._written += len(data)

    def head(self, limit: int = 65536) -> bytes:
        with self.reader(0) as fh:
            return fh.read(limit)

    def reader(self, start: int = 0) -> BinaryIO:
        if self._file is not None:
            self._file.flush()
            self._file.seek(start)
            return cast(BinaryIO, _Borrowed(self._file))
        if self._buf is None:
            return io.BytesIO(b"")
        return io.BytesIO(bytes(self._buf[start:]))

    def prepend(self, field: bytes) -> None:
        self._open_only("prepend")
        self._fields.append(bytes(field))

    def replace_head(self, length: int, data: bytes) -> None:
        self._open_only("replace_head")
        if self._head is not None:
            raise StoreError(f"queue_id={self._queue_id}: head replaced twice")
        self._head = (length, bytes(data))

    def memory_content(self) -> MemoryContent | None:
        if self.state != "open" or self._buf is None:
            return None
        skip, top = (
            (0, b"") if self._head is None else (min(self._head[0], self._written), self._head[1])
        )
        body = bytearray(top) + self._buf[skip:]
        return MemoryContent(list(self._fields), body, self.size)

    def discard(self) -> None:
        if self.state in ("open", "failed"):
            self._drop("discarded")

    # --- the committer's side ---------------------------------------------------------

    def begin_commit(self) -> bool:
        if self.state != "open":
            return False
        self.state = "committing"
        return True

    def finish(self, ok: bool) -> None:
        self._drop("committed" if ok else "failed")

    def pieces(self) -> Iterator[bytes]:
        """The message as committed (see the contract), in pieces of at most _READ octets."""
        yield from self._fields
        skip = 0
        if self._head is not None:
            skip = min(self._head[0], self._written)
            yield self._head[1]
        if self._file is None:
            assert self._buf is not None
            view = memoryview(self._buf)
            for i in range(skip, self._written, _READ):
                yield bytes(view[i : i + _READ])
            return
        self._file.flush()
        self._file.seek(skip)
        while chunk := self._file.read(_READ):
            yield chunk

    def _drop(self, state: str) -> None:
        self.state = state
        self._buf = None
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # an unnamed file: nothing is left behind either way
            self._file = None


class _Borrowed(io.RawIOBase):
    """The spilled file read from its current offset; closing does not close it."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._fh.read(len(b))
        b[: len(data)] = data
        return len(data)
