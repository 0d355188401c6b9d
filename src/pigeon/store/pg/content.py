"""Message content read back from PostgreSQL, chunk by chunk.

Contract:
  * `PgContent(pool, queue_id)` is the `MessageContent` of
    pigeon/queue/api.py: cheap to make (no query until used); `size` is the
    entry's recorded size; `open()` returns a buffered stream that fetches
    one `pigeon_content` row (committer.CHUNK octets) at a time, each with
    its own short query on a pooled connection, so a big message never sits
    in memory whole and no connection is held between reads.
  * Reading the chunks of an entry removed meanwhile ends early; the stream
    then raises StoreError rather than returning a short message (the
    total is checked against `size`).
  * Missing entry: StoreError from `size` and from `open()`. Streams have
    no `fileno()` (io.UnsupportedOperation): readers fall back to read().
"""

from __future__ import annotations

import io
from typing import Any, BinaryIO

from pigeon.store.pg.db import Pool
from pigeon.vocab.errors import StoreError

__all__ = ["PgContent"]

_SIZE = "SELECT size FROM pigeon_queue WHERE queue_id = %s"
_CHUNK = "SELECT data FROM pigeon_content WHERE queue_id = %s AND seq = %s"


class PgContent:
    __slots__ = ("_pool", "_qid", "_size")

    def __init__(self, pool: Pool, queue_id: str) -> None:
        self._pool, self._qid = pool, queue_id
        self._size: int | None = None

    @property
    def size(self) -> int:
        if self._size is None:
            with self._pool.conn("queue content") as conn:
                row = conn.execute(_SIZE, (self._qid,)).fetchone()
            if row is None:
                raise StoreError(f"queue_id={self._qid} content: no such entry")
            self._size = int(row[0])
        return self._size

    def open(self) -> BinaryIO:
        return io.BufferedReader(_ChunkReader(self._pool, self._qid, self.size), 256 * 1024)


class _ChunkReader(io.RawIOBase):
    def __init__(self, pool: Pool, queue_id: str, size: int) -> None:
        self._pool, self._qid, self._size = pool, queue_id, size
        self._seq = 0
        self._pos = 0  # octets returned so far
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if not self._buf:
            if self._pos >= self._size:
                return 0
            with self._pool.conn("queue content") as conn:
                row = conn.execute(_CHUNK, (self._qid, self._seq)).fetchone()
            if row is None:
                raise StoreError(
                    f"queue_id={self._qid} content: chunk {self._seq} missing "
                    f"after {self._pos} of {self._size} octets"
                )
            self._seq += 1
            self._buf = memoryview(bytes(row[0]))
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        self._pos += n
        return n
