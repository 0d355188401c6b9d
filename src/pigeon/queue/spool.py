"""Spools and queue IDs: the part of the queue the SMTP side touches.

Contract:
  * `SpoolFile` (the `Spool` of queue/api.py) is the content of one SMTP
    transaction being received: append-only, cheap enough to use from the
    event loop (no fsync here: the committer, queue/commit.py, makes it
    durable at commit). It stays
    in memory (a bytearray) up to `SPILL_THRESHOLD` octets, so a typical
    message costs no system call before the commit; past that it spills to
    `tmp/<queue_id>` and is written through a `_SPOOL_BUFFER` file buffer.
    Memory per spool is therefore bounded by about `SPILL_THRESHOLD`, and a
    session holds at most one spool.
  * A spilled spool's file begins with the preamble of pigeon/msgfile.py
    (the store id and `spool.envelope`, the envelope as known when DATA
    began), written in the same writev as the content it spills: no extra
    system call. `size` and `head()` count and return message octets only.
  * Headers on top (`prepend(field)`): fields a receive check adds go
    above everything written (our Received: included), in the order given.
    They are kept in a list beside the content and written first at the
    commit: for an in-memory spool in the same writev as the rest (no copy
    of the content); a spilled spool's file is then copied once behind them
    by the committer (queue/commit.py). `size` counts them; `head()` and
    `reader()` do not (they read what `write()` wrote).
  * `reader(start)` is a binary stream over the octets written from
    `start` on, for checks at the end of the data: over the memory itself
    (no copy) or the spilled file. Nothing may be written while one is open.
  * A spool ends exactly one way: committed (`QueueStore.commit_async`) or
    discarded (`discard()`, idempotent, never raises). A spool that ends
    neither way (the process died) is removed by `QueueStore.recover()` if it
    had spilled to `tmp/`, and simply vanishes if it was only in memory.
  * `Spools(tmp_dir, store_id)` is the spool area of one open store: it
    hands out spools (`new()`) and knows which are still being received
    (`live()`), so recovery never takes a spilled spool of this process
    for debris (queue/recovery.py). A spool knows its area, never the store.
  * The committer drives a spool through its commit with the methods under
    "the committer's side" (begin_commit, write_to, sync_spilled,
    copy_behind_fields, committed, abort_commit); nobody else calls them.
  * Queue IDs are 15 characters of Crockford base32 ([0-9A-Z] without
    I L O U): 10 of milliseconds since the epoch, 2 of a per-millisecond
    counter, 3 that tell processes apart (see `_refresh_tail`). They sort by
    arrival within a process, are unique across the processes sharing a
    queue (workers, sendmail) without touching the file system, and are safe
    as file names everywhere. The committer still creates `msg/<id>`
    exclusively, so a collision could only fail a commit, never overwrite.
  * Errors are `StoreError` (health.store_error); `.disk_full` tells
    ENOSPC/EDQUOT apart (the SMTP side answers 452 4.3.1 rather than 451
    4.3.0).
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO, cast

from pigeon import msgfile
from pigeon.queue.files import Disk
from pigeon.queue.health import store_error
from pigeon.queue.model import Envelope

# Re-exported for the SMTP side, which imported them from here (issue 11
# moves them to pigeon.vocab; new code imports them from there).
from pigeon.vocab.errors import CorruptEntry, StoreError

__all__ = [
    "NEW_ID",
    "SPILL_THRESHOLD",
    "CorruptEntry",
    "MemoryContent",
    "SpoolFile",
    "Spools",
    "StoreError",
]

# Crockford base32: digits sort before letters in ASCII, so IDs made of it
# sort by creation time; no I/L/O/U, so they are easy to read aloud.
_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SPOOL_BUFFER = 64 * 1024
_O_SPOOL = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)

#: Content up to this size stays in memory until the commit writes it
#: straight to msg/<id> (no tmp file, no rename). Bigger messages spill to
#: tmp/<id>. It bounds the memory a session can pin with an unfinished DATA:
#: at most `limits.connections` x 128 KiB for a whole process (docs/security.md).
#: 128 KiB keeps the common case (and the 100 KB benchmark) in memory.
SPILL_THRESHOLD = 128 * 1024


def _to_b32(value: int, width: int) -> str:
    out: list[str] = []
    for _ in range(width):
        out.append(_B32[value & 31])
        value >>= 5
    return "".join(reversed(out))


# The last 3 characters of a queue ID (15 bits) tell processes apart. Spool
# creation makes no file any more (an O_EXCL create used to catch clashes),
# so IDs must differ between live processes by construction: the tail is
# (pid + salt) mod 32768. The salt is drawn once at import; workers are forked
# after pigeon.queue is imported, share it, and so clash only if their pids
# are equal modulo 32768. An unrelated process (sendmail) has its own salt:
# like the per-ID random tail before, a 1 in 32768 chance, and then only in a
# millisecond in which both counters match. A clash fails that commit (the
# committer creates msg/<id> exclusively), it never overwrites a message.
_TAIL_SALT = int.from_bytes(os.urandom(2), "big")
_tail = ""


def _refresh_tail() -> None:
    """Compute this process's ID tail (again after a fork)."""
    global _tail
    _tail = _to_b32((os.getpid() + _TAIL_SALT) & 0x7FFF, 3)


_refresh_tail()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_refresh_tail)


class _IdGenerator:
    """Queue IDs: 10 chars of milliseconds + 2 of counter + 3 of process = 15 chars.

    Sortable by time within a process (the counter breaks ties inside one
    millisecond; if it overflows we borrow the next millisecond), unique
    across processes by the process tail, and made only of [0-9A-Z] so safe
    as a file name on any file system. One generator serves every store of a
    process (`NEW_ID`): two would hand out the same IDs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def next(self) -> str:
        with self._lock:
            ms = int(time.time() * 1000)
            if ms <= self._last_ms:
                ms = self._last_ms
                self._counter += 1
                if self._counter >= 32 * 32:
                    ms += 1
                    self._counter = 0
            else:
                self._counter = 0
            self._last_ms = ms
            counter = self._counter
        return _to_b32(ms, 10) + _to_b32(counter, 2) + _tail


#: The process-wide queue ID source (shared by every QueueStore).
NEW_ID = _IdGenerator()


class Spools:
    """The spool area tmp/ of one open store (see the contract)."""

    __slots__ = ("directory", "disk", "_prefix", "_preamble_id", "_lock", "_live")

    def __init__(self, directory: Path, store_id: str, disk: Disk | None = None) -> None:
        self.directory = directory
        self.disk = disk or Disk()
        self._prefix = os.path.join(directory, "")
        self._preamble_id = store_id
        self._lock = threading.Lock()
        self._live: set[str] = set()  # spools not yet finished

    def new(self, envelope: Envelope | None = None) -> SpoolFile:
        """A new queue ID and an empty spool (in memory: no system call).
        `envelope` (its queue_id is set to the spool's) goes into the
        preamble should the spool spill."""
        qid = NEW_ID.next()
        # Live from now on: should the spool spill to tmp/<id>, a concurrent
        # recover() must not take that file for a leftover of a crash.
        with self._lock:
            self._live.add(qid)
        if envelope is not None:
            envelope.queue_id = qid
        return SpoolFile(self, qid, self._prefix + qid, envelope)

    def live(self) -> set[str]:
        """The IDs of spools neither committed nor discarded yet."""
        with self._lock:
            return set(self._live)

    def finished(self, queue_ids: Iterable[str]) -> None:
        with self._lock:
            self._live.difference_update(queue_ids)

    def draft_preamble(self, spool: SpoolFile) -> bytes:
        """The preamble a spool writes when it spills (msgfile.FLAG_DRAFT)."""
        env = spool.envelope
        raw = (
            b"null"
            if env is None
            else json.dumps(
                env.to_dict() | {"queue_id": spool.queue_id}, separators=(",", ":")
            ).encode()
        )
        return msgfile.encode(self._preamble_id, raw, draft=True)


class SpoolFile:
    """A message being received: in memory, then `tmp/<queue_id>` past
    `SPILL_THRESHOLD`. Append-only.

    `path` is where the spilled file lives (it exists only once spilled).
    `in_memory` tells the committer which way to make it durable.
    `envelope` (settable until the spool spills) goes into the preamble of
    the spilled file.
    """

    __slots__ = (
        "queue_id",
        "path",
        "size",
        "envelope",
        "_area",
        "_buf",
        "_fh",
        "_state",
        "_offset",
        "_prepend",
    )

    def __init__(
        self, area: Spools, queue_id: str, path: str, envelope: Envelope | None = None
    ) -> None:
        self.queue_id = queue_id
        self.path = path
        self.envelope = envelope
        self._area = area
        self._offset = 0  # preamble length, once spilled
        self._buf: bytearray | None = bytearray()  # None once spilled or finished
        self._fh: BinaryIO | None = None  # the tmp/ file, once spilled
        self.size = 0
        self._prepend: list[bytes] = []  # header fields written first at commit
        # open -> committing -> done | discarded; open -> failed (a write
        # error) -> discarded
        self._state = "open"

    @property
    def in_memory(self) -> bool:
        """True while the content has not spilled to a tmp/ file."""
        return self._fh is None

    def write(self, data: bytes) -> None:
        """Append `data`. Raises `StoreError` (disk_full on ENOSPC) on failure;
        the spool is then 'failed': it can only be discarded, never committed
        (its content is incomplete)."""
        if self._state != "open":
            raise StoreError(f"spool {self.queue_id} is {self._state}")
        buf = self._buf
        if buf is not None and len(buf) + len(data) <= SPILL_THRESHOLD:
            buf += data
            self.size += len(data)
            return
        try:
            if buf is not None:
                self._spill(data)
            else:
                assert self._fh is not None
                self._fh.write(data)
        except OSError as e:
            self._state = "failed"
            raise store_error(f"spool write {self.queue_id}", e) from e
        self.size += len(data)

    def _spill(self, data: bytes) -> None:
        """Move the in-memory content and `data` to tmp/<id>, after the
        preamble, in one writev; later writes go through the file's buffer.

        The id is registered as live since Spools.new(), so a concurrent
        recover() leaves this file alone. Runs where write() runs (the event
        loop): one file create and a page-cache write, as every spool cost
        before spools lived in memory.
        """
        area = self._area
        preamble = area.draft_preamble(self)
        fd = area.disk.open(self.path, _O_SPOOL, 0o600)  # 0600 like the msg/ files
        try:
            self._fh = open(fd, "wb", buffering=_SPOOL_BUFFER)
        except BaseException:
            os.close(fd)
            _unlink_quietly(self.path)
            raise
        # From here on discard() must unlink the file, whatever happens next.
        self._offset = len(preamble)
        buf, self._buf = self._buf, None
        assert buf is not None  # write() spills only from memory
        area.disk.write_all(fd, [preamble, buf, data])

    def head(self, limit: int = 65536) -> bytes:
        """The first `limit` octets written so far (for header checks before commit)."""
        if self._buf is not None:
            return bytes(self._buf[:limit])
        if self._fh is None:  # finished: nothing to read back
            raise StoreError(f"spool {self.queue_id} is {self._state}")
        self._fh.flush()
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            return f.read(limit)

    def prepend(self, field: bytes) -> None:
        """Put `field` (a whole header field with its CRLF) on top of the
        message, below the fields prepended before it (module contract)."""
        if self._state != "open":
            raise StoreError(f"spool {self.queue_id} is {self._state}")
        self._prepend.append(field)
        self.size += len(field)

    def reader(self, start: int = 0) -> BinaryIO:
        """A stream over the content written, from octet `start` (module contract)."""
        buf = self._buf
        if buf is not None:
            return cast(BinaryIO, io.BufferedReader(_ViewReader(memoryview(buf)[start:])))
        if self._fh is None:
            raise StoreError(f"spool {self.queue_id} is {self._state}")
        self._fh.flush()
        fh = open(self.path, "rb")
        fh.seek(self._offset + start)
        return fh

    def memory_content(self) -> MemoryContent | None:
        """The whole message as it would be committed (prepended fields, then
        the content), when it is still in memory and open; else None. It
        shares the buffer: use it before `discard()` or the commit."""
        if self._state != "open" or self._buf is None:
            return None
        return MemoryContent(self._prepend, self._buf, self.size)

    def discard(self) -> None:
        """Forget the content (close and unlink the file if it spilled).
        Idempotent; never raises."""
        if self._state in ("discarded", "done", "committing"):
            return
        self._state = "discarded"
        self._buf = None
        if self._fh is not None:
            self._close_quietly()
            _unlink_quietly(self.path)
        self._area.finished((self.queue_id,))

    # --- the committer's side (queue/commit.py) ------------------------------------

    def begin_commit(self, envelope: Envelope) -> None:
        """open -> committing, for the envelope it is committed with. A spool
        that cannot be committed (finished, failed, another queue ID) raises
        StoreError and is discarded (a no-op unless a write failed)."""
        if self._state != "open":
            problem = f"spool {self.queue_id} is {self._state}"
        elif envelope.queue_id != self.queue_id:
            problem = "envelope queue_id does not match the spool"
        else:
            self._state = "committing"
            return
        self.discard()
        raise StoreError(problem)

    @property
    def has_fields(self) -> bool:
        """Header fields were prepended (a spilled spool is then copied)."""
        return bool(self._prepend)

    def write_to(self, fd: int, preamble: bytes) -> None:
        """In memory: write `preamble`, the prepended fields and the content
        to `fd` in one writev, then free the memory (the bytes are on disk)."""
        assert self._buf is not None
        self._area.disk.write_all(fd, [preamble, *self._prepend, self._buf])
        self._buf = None

    def copy_behind_fields(self, fd: int, preamble: bytes) -> None:
        """Spilled, with fields to prepend: write `preamble` and the fields to
        `fd`, then copy the content in from tmp/<id> behind them (in the
        kernel: msgfile.copy_from); the tmp/ file is closed, not removed."""
        fh = self._fh
        assert fh is not None
        try:
            fh.flush()  # an error here (ENOSPC) fails the commit
        finally:
            self._close_quietly()
        self._area.disk.write_all(fd, [preamble, *self._prepend])
        src = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            msgfile.copy_from(src, self._offset, fd)
        finally:
            os.close(src)

    def sync_spilled(self, fsync: bool) -> None:
        """Spilled: flush the file buffer, fsync (if `fsync`) and close tmp/<id>."""
        fh = self._fh
        assert fh is not None
        try:
            fh.flush()
            if fsync:
                self._area.disk.fsync(fh.fileno())
        finally:
            self._close_quietly()

    def committed(self) -> None:
        self._state = "done"

    def abort_commit(self) -> None:
        """The commit failed (Rule 3 of queue/commit.py): close and unlink the
        tmp/ file if it spilled; the spool is discarded. Never raises."""
        self._close_quietly()
        if self._fh is not None:
            _unlink_quietly(self.path)  # the spilled file, if it is still there
        self._buf = None
        self._state = "discarded"
        self._area.finished((self.queue_id,))

    def _close_quietly(self) -> None:
        if self._fh is not None and not self._fh.closed:
            try:
                self._fh.close()
            except OSError:
                pass


class MemoryContent:
    """A `MessageContent` (pigeon/queue/api.py) over an in-memory spool: its
    prepended fields, then its buffer (`SpoolFile.memory_content`)."""

    __slots__ = ("_fields", "_buf", "size")

    def __init__(self, fields: list[bytes], buf: bytearray, size: int) -> None:
        self._fields, self._buf, self.size = fields, buf, size

    def open(self) -> BinaryIO:
        return io.BytesIO(b"".join((*self._fields, self._buf)))


class _ViewReader(io.RawIOBase):
    """Reads a memoryview without copying it (`SpoolFile.reader`); closing
    releases the view, so the buffer can be freed or grown again."""

    def __init__(self, view: memoryview) -> None:
        self._view: memoryview | None = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = self._view
        if view is None:
            raise ValueError("I/O operation on closed reader")
        n = min(len(b), len(view) - self._pos)
        b[:n] = view[self._pos : self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None
        super().close()


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
