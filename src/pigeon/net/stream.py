"""One server connection as an asyncio Protocol: bytes in, bytes out, nothing else.

Why not asyncio's StreamReader/StreamWriter: waiting for "data, or the
session's deadline, or a shutdown" with streams takes a Task per read and an
`asyncio.wait()` per wait, which profiling put at about a tenth of the event
loop's time under load. Here a wait is one future and, when there is a
deadline, one timer handle.

Contract:
  * `read(timeout)` returns every octet that arrived since the last call
    (bytes), b"" once the peer closed its side or the connection broke, or
    None when `timeout` seconds passed or `wake()` was called first. Only one
    reader at a time (the connection's driver).
  * Bounded memory: reading from the socket pauses while more than `limit`
    octets wait unread and resumes when `read()` takes them (STYLE: bounded
    memory per connection).
  * `write()` never blocks; `drain()` waits while the transport's buffer is
    over its high-water mark, and raises ConnectionResetError once the
    connection is lost (as StreamWriter.drain does).
  * TLS: `start_tls()` hands the socket to asyncio's TLS layer (RFC 3207
    STARTTLS, RFC 8314 implicit TLS); this protocol stays the application
    side, so decrypted octets arrive in the same buffer. `take_buffer()`
    returns and clears what arrived in plaintext before the handshake (the
    caller drops it for STARTTLS, CVE-2011-0411, or replays it into the TLS
    layer for implicit TLS).
"""
from __future__ import annotations

import asyncio
import ssl
from typing import Any, Callable

#: Unread octets at which reading from the socket pauses (the driver reads
#: everything at once, so this is only reached by a peer that floods us while
#: we wait for the disk).
READ_LIMIT = 256 * 1024


class SmtpStream(asyncio.Protocol):
    """The Protocol of one accepted connection; see the module contract."""

    def __init__(self, on_connected: Callable[["SmtpStream"], Any], *,
                 limit: int = READ_LIMIT) -> None:
        self._on_connected = on_connected
        self._limit = limit
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task | None = None
        self._buffer = bytearray()
        self._eof = False
        self._paused_reading = False
        self._reading_stopped = False      # pause_reading() by the driver (STARTTLS)
        self._waiter: asyncio.Future | None = None
        self._drain_waiter: asyncio.Future | None = None
        self._write_paused = False
        self._lost = False
        self._closed = self._loop.create_future()

    # --- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is not None:
            # start_tls() attached us to the TLS transport: same connection.
            self.transport = transport  # type: ignore[assignment]
            return
        self.transport = transport  # type: ignore[assignment]
        result = self._on_connected(self)
        if asyncio.iscoroutine(result):
            self.task = self._loop.create_task(result)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._wakeup()
        if len(self._buffer) > self._limit and not self._paused_reading:
            self._paused_reading = True
            self._pause_transport()

    def eof_received(self) -> bool:
        self._eof = True
        self._wakeup()
        return False                      # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._eof = True
        self._wakeup()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection lost"))
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- reading -------------------------------------------------------------------

    async def read(self, timeout: float | None) -> bytes | None:
        """Data (bytes), b"" at EOF, or None on timeout or `wake()`."""
        if not self._buffer and not self._eof:
            waiter = self._waiter = self._loop.create_future()
            timer = None
            if timeout is not None:
                timer = self._loop.call_later(max(0.0, timeout), self._expire, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
            if not self._buffer and not self._eof:
                return None
        return self._take()

    def wake(self) -> None:
        """Make a pending `read()` return None now (a SIGTERM drain)."""
        self._wakeup()

    def take_buffer(self) -> bytes:
        """Return and clear the octets received but not read yet."""
        data = bytes(self._buffer)
        self._buffer.clear()
        self._maybe_resume()
        return data

    def pause_reading(self) -> None:
        """Stop reading from the socket until `start_tls()` (STARTTLS)."""
        self._reading_stopped = True
        self._pause_transport()

    def _take(self) -> bytes:
        if not self._buffer:
            return b""
        data = bytes(self._buffer)
        self._buffer.clear()
        self._maybe_resume()
        return data

    def _maybe_resume(self) -> None:
        if self._paused_reading and not self._reading_stopped:
            self._paused_reading = False
            self._resume_transport()

    def _wakeup(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @staticmethod
    def _expire(waiter: asyncio.Future) -> None:
        if not waiter.done():
            waiter.set_result(None)

    def _pause_transport(self) -> None:
        try:
            self.transport.pause_reading()
        except (AttributeError, RuntimeError):
            pass                          # closing, or a transport that cannot pause

    def _resume_transport(self) -> None:
        try:
            self.transport.resume_reading()
        except (AttributeError, RuntimeError):
            pass

    # --- writing ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self._lost:
            self.transport.write(data)

    async def drain(self) -> None:
        if self._lost:
            raise ConnectionResetError("connection lost")
        if not self._write_paused:
            return
        waiter = self._drain_waiter = self._loop.create_future()
        await waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if self.transport is None:
            return default
        return self.transport.get_extra_info(name, default)

    # --- TLS ---------------------------------------------------------------------------

    async def start_tls(self, context: ssl.SSLContext, *, handshake_timeout: float) -> None:
        """Run the server side of a TLS handshake on this connection.

        Raises what `loop.start_tls` raises (ssl.SSLError, OSError,
        TimeoutError...). Reading resumes through the TLS transport.
        """
        old = self.transport
        new = await self._loop.start_tls(old, self, context, server_side=True,
                                         ssl_handshake_timeout=handshake_timeout)
        self.transport = new
        self._reading_stopped = False
        self._paused_reading = False
