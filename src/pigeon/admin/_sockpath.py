"""Unix socket paths: binding with a final mode, and paths longer than sockaddr_un allows.

Contract: `UnixServer` is the base of pigeon's Unix-socket servers
(control, submit): `listen(mode, limit)` binds with `bind_socket` and
serves each connection with the subclass's `handle(reader, writer)`;
`close()` stops listening, cancels the connections in progress, waits for
them and removes the socket file. The connection's writer is closed after
`handle` returns, whatever happened. Every wait on a client is bounded
(CONTRIBUTING.md, rule 4): subclasses read and write through `bounded()`,
which gives up after `io_timeout` seconds; a client that stalls (never
sends its request, never reads the answer) is cut off and its slot freed,
and closing waits at most CLOSE_TIMEOUT for the peer.
`bind_socket(path, mode)` returns a listening, non-blocking Unix
socket at `path` with permissions `mode`: a temporary name is bound,
chmod'ed, then renamed into place, so `path` is never reachable with other
permissions; on failure the temporary name is removed and OSError raised.
`short_path(path)` is a context manager yielding a name that
reaches `path` and fits: `path` itself when it is short enough, else
"/proc/self/fd/N/<name>" through an O_PATH descriptor of the directory
(Linux resolves it for bind() and connect() alike). Deep test directories
and long data_dir paths would otherwise make the control socket
unusable. On systems without /proc the original path is yielded and the
OS reports the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger("pigeon.admin")

#: Seconds a client may take to send its request or read an answer.
IO_TIMEOUT = 60.0
#: Seconds closing a connection may wait for the peer.
CLOSE_TIMEOUT = 5.0

MAX_SUN_PATH = 107  # 108 bytes including the terminating NUL


@contextlib.contextmanager
def short_path(path: Path) -> Iterator[str]:
    text = os.fspath(path)
    if len(os.fsencode(text)) <= MAX_SUN_PATH or not os.path.isdir("/proc/self/fd"):
        yield text
        return
    flags = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY
    fd = os.open(Path(text).parent, flags)
    try:
        yield f"/proc/self/fd/{fd}/{Path(text).name}"
    finally:
        os.close(fd)


def bind_socket(path: Path, mode: int, backlog: int = 16) -> socket.socket:
    """A listening Unix socket at `path` with permissions `mode` (see the contract)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with short_path(tmp) as name:
            sock.bind(name)
        os.chmod(tmp, mode)
        os.rename(tmp, path)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return sock


class UnixServer:
    """Listening and closing for a Unix-socket server (see the module contract)."""

    def __init__(self, path: Path, *, io_timeout: float = IO_TIMEOUT) -> None:
        self.path = Path(path)
        self.io_timeout = io_timeout
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task] = set()

    async def listen(self, mode: int, limit: int, backlog: int = 16) -> None:
        """Bind and serve; OSError when the socket cannot be created."""
        sock = bind_socket(self.path, mode, backlog)
        self._server = await asyncio.start_unix_server(self._connection, sock=sock, limit=limit)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def bounded(self, awaitable: Awaitable[T]) -> T:
        """`awaitable` (a read or a drain), or TimeoutError after io_timeout."""
        return await asyncio.wait_for(awaitable, self.io_timeout)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            await self.handle(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except TimeoutError:
            log.info(
                "%s: a client stalled for %.0fs; connection closed", self.path, self.io_timeout
            )
            writer.transport.abort()
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
            except (ConnectionError, TimeoutError, asyncio.CancelledError):
                pass

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        try:
            self.path.unlink()
        except OSError:
            pass
