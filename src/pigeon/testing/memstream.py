"""A connection in memory: the `net.stream.ByteStream` the driver reads and writes,
played by a test instead of a socket.

Contract:
  * The real driver (`pigeon.net.smtpd.Connection`) runs over it unchanged.
    The test side calls `send(data)`, `send_eof()`, `advance(seconds)` (the
    fake clock `now` moves; a read whose deadline passed returns None, as a
    socket read times out), `handshake()` (completes a pending
    `start_tls()` with `MEMORY_TLS`-like parameters) and reads `output`.
  * `settled()` waits until the driver is blocked on this stream again
    (reading with nothing to read, or in a handshake) or has finished:
    only then is its output complete. It waits at most `limit` seconds of
    real time (a test never hangs).
  * `closed` is True once the driver closed or aborted the connection.
  * The clock is the stream's: give `clock` to the driver's services.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from pigeon.proto.events import TlsInfo


class _FakeSsl:
    """What `net.tls.tls_info` reads of an SSL object."""

    def __init__(self, info: TlsInfo) -> None:
        self._info = info

    def version(self) -> str:
        return self._info.version

    def cipher(self) -> tuple[str, str, int]:
        return (self._info.cipher, self._info.version, self._info.bits)


class MemoryStream:
    """One in-memory connection (module contract)."""

    def __init__(self, tls: TlsInfo, peer: tuple[str, int] = ("127.0.0.1", 40000)) -> None:
        self.now = 0.0
        self.output = bytearray()
        self.closed = False
        self._tls = tls
        self._peer = peer
        self._inbox = bytearray()
        self._eof = False
        self._waiter: asyncio.Future[bytes | None] | None = None
        self._deadline: float | None = None
        self._handshake: asyncio.Future[None] | None = None
        self._ssl: _FakeSsl | None = None
        self._blocked = asyncio.Event()

    def clock(self) -> float:
        return self.now

    # -- the test's side --------------------------------------------------------

    def send(self, data: bytes) -> None:
        self._inbox += data
        self._deliver()

    def send_eof(self) -> None:
        self._eof = True
        self._deliver()

    def _deliver(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._resolve(self._take())

    def advance(self, seconds: float) -> None:
        self.now += seconds
        if self._deadline is not None and self.now >= self._deadline:
            self._resolve(None)

    @property
    def handshake_pending(self) -> bool:
        return self._handshake is not None and not self._handshake.done()

    def handshake(self) -> None:
        assert self._handshake is not None
        self._ssl = _FakeSsl(self._tls)
        self._blocked.clear()
        self._handshake.set_result(None)

    def finished(self) -> None:
        """The driver is done (call from its task's done callback)."""
        self._blocked.set()

    async def settled(self, limit: float = 10.0) -> None:
        await asyncio.wait_for(self._blocked.wait(), limit)

    def _resolve(self, value: bytes | None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._waiter = self._deadline = None
            self._blocked.clear()
            waiter.set_result(value)

    def _take(self) -> bytes | None:
        if self._inbox or self._eof:
            data = bytes(self._inbox)
            self._inbox.clear()
            return data
        return None

    # -- the driver's side (net.stream.ByteStream) ---------------------------

    async def read(self, timeout: float | None) -> bytes | None:
        data = self._take()
        if data is not None:
            return data
        self._waiter = asyncio.get_running_loop().create_future()
        self._deadline = None if timeout is None else self.now + timeout
        self._blocked.set()
        return await self._waiter

    def wake(self) -> None:
        self._resolve(None)

    def take_buffer(self) -> bytes:
        data = bytes(self._inbox)
        self._inbox.clear()
        return data

    def pause_reading(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.output += data

    async def drain(self, timeout: float) -> None:
        pass

    async def close_and_wait(self, timeout: float) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peer
        if name == "ssl_object":
            return self._ssl if self._ssl is not None else default
        return default

    async def start_tls(
        self, context: ssl.SSLContext, *, timeout: float, early: bytes = b""
    ) -> None:
        self._handshake = asyncio.get_running_loop().create_future()
        self._blocked.set()
        await self._handshake
