"""The queue's content files (msg/<queue_id>), handed out as streams, never as paths.

Contract:
  * `ContentFiles(msg_dir)` is the only code that maps a queue ID to its
    content file. Readers outside the SQLite store get a `FileContent`
    (the `MessageContent` of queue/api.py) from `content(queue_id)`, so
    content could live anywhere (a database, an object store) without
    changing them. Inside the store, `path()` serves the committer,
    recovery and removal.
  * `FileContent.open()` returns a binary stream positioned on the
    message's first octet (past the preamble, pigeon/msgfile.py) that ends
    at its last; the caller closes it. `size` is the message's length in
    octets (read from the file on first use). Both raise `StoreError` when
    the file cannot be read (missing, damaged preamble: EBADMSG, I/O
    error); its message names the queue ID and the reason, not the path.
    Creating a `FileContent` costs no system call.
  * Optimisation, documented (queue/api.py, `MessageContent`): the stream
    is a real file, so `stream.fileno()` works and a reader may use
    fd-level calls (os.sendfile, os.copy_file_range) from the stream's
    current offset. Other backends raise io.UnsupportedOperation there;
    callers must fall back to read().
  * The stream is unbuffered (a raw file, as the Maildir copy always read
    it): readers read in big chunks (64 KiB) that go straight from the
    kernel into their buffer, not through a second one, and an explicit
    buffering spares the isatty() ioctl Python's default asks per open.
  * `unlink(queue_id)`: the file is removed if present; a missing file is
    not an error (removal is idempotent, Rule 4 of queue/store.py).
  * `Disk` is the seam for the system calls that make content durable
    (create, write, fsync, directory fsync): the committer and the spools
    call them through the `Disk` the store was given, so tests inject
    faults (ENOSPC, EIO) and observe the order of syncs with a subclass
    (pigeon.testing.storage.FaultyDisk) instead of monkeypatching modules
    (CONTRIBUTING.md, rule 14). The real one is the plain functions: no
    cost beyond an attribute lookup.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from pigeon import msgfile
from pigeon.fsutil import fsync_dir
from pigeon.queue.health import store_error

__all__ = ["ContentFiles", "Disk", "FileContent"]


class Disk:
    """The write path's system calls (see the contract); OSError as they raise it."""

    def open(self, path: str, flags: int, mode: int) -> int:
        return os.open(path, flags, mode)

    def write_all(self, fd: int, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """All of `parts` with one writev (pigeon/msgfile.py)."""
        msgfile.write_all(fd, parts)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fsync_dir(self, path: Path) -> None:
        """The directory's entries durable (pigeon/fsutil.py)."""
        fsync_dir(path)


class FileContent:
    """`MessageContent` (queue/api.py) of one content file in msg/."""

    __slots__ = ("queue_id", "_path", "_size")

    def __init__(self, queue_id: str, path: str) -> None:
        self.queue_id = queue_id
        self._path = path
        self._size: int | None = None

    @property
    def size(self) -> int:
        if self._size is None:
            self.open().close()
        assert self._size is not None
        return self._size

    def open(self) -> BinaryIO:
        try:
            fh, self._size = msgfile.open_message(self._path, buffering=0)
        except OSError as exc:
            raise store_error(f"queue_id={self.queue_id} content", _without_path(exc)) from exc
        return fh

    def __repr__(self) -> str:
        return f"<FileContent {self.queue_id}>"


class ContentFiles:
    """msg/: where committed content lives (see the contract)."""

    __slots__ = ("directory", "_prefix")

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._prefix = os.path.join(directory, "")  # str concatenation beats Path /

    def content(self, queue_id: str) -> FileContent:
        return FileContent(queue_id, self._prefix + queue_id)  # a str: a Path costs more

    def path(self, queue_id: str) -> str:
        """Inside the store only: the file of `queue_id`."""
        return self._prefix + queue_id

    def exists(self, queue_id: str) -> bool:
        return os.path.exists(self._prefix + queue_id)

    def names(self) -> set[str]:
        return {entry.name for entry in os.scandir(self.directory)}

    def unlink(self, queue_id: str) -> None:
        try:
            os.unlink(self._prefix + queue_id)
        except FileNotFoundError:
            pass


def _without_path(exc: OSError) -> OSError:
    """The same error without the file name, for a message that is about
    the queue ID (two faces, CONTRIBUTING.md rule 6: paths stay private)."""
    if exc.filename is None or exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror)
