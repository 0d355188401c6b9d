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
  * Half-close: when the peer ends its side (TCP FIN, or a TLS close_notify)
    our side stays open, so every reply to the commands it sent before still
    reaches it (RFC 5321 §4.1.1.10 only says a client SHOULD wait for the
    reply to QUIT; Exim pipelines the end of data with QUIT and shuts down
    its side before it reads the 250). The connection closes only when the
    driver calls `close()`.
  * Bounded memory: reading from the socket pauses while more than `limit`
    octets wait unread and resumes when `read()` takes them.
  * Bounded waits: `drain(timeout)` waits while the transport's buffer is over
    its high-water mark, at most `timeout` seconds (then TimeoutError), and
    raises ConnectionResetError once the connection is lost.
    `close_and_wait(timeout)` flushes what was written and closes, and
    aborts the connection if that takes longer than `timeout` (a peer that
    never reads would otherwise hold the socket open forever).
    `start_tls(..., timeout=)` bounds the handshake.
  * `write()` never blocks and never raises; after `close()` or once the
    connection is lost it drops the data.
  * TLS: `start_tls()` runs the server side of a handshake (RFC 3207
    STARTTLS, RFC 8314 implicit TLS) in a `pigeon.net.tlsengine.TlsEngine`
    over the same socket: this protocol stays the socket's protocol and
    decrypted octets arrive in the same buffer, so half-close behaves the
    same with and without TLS (asyncio's own TLS transport would shut down at
    the peer's close_notify and drop our replies). `take_buffer()` returns
    and clears what arrived in plaintext before the handshake (the caller
    drops it for STARTTLS, CVE-2011-0411, or passes it to `start_tls(early=)`
    for implicit TLS, where it is the start of the ClientHello).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any, Protocol

from pigeon.net.tlsengine import TlsEngine

#: Unread octets at which reading from the socket pauses (the driver reads
#: everything at once, so this is only reached by a peer that floods us while
#: we wait for the disk).
READ_LIMIT = 256 * 1024


def before_handshake(
    stream: ByteStream, *, implicit: bool, peer: str, log: logging.Logger
) -> bytes:
    """Stop reading and take what arrived before a TLS handshake, for
    `start_tls(early=...)`. Implicit TLS: it may be the start of the
    ClientHello (reading starts as soon as the connection is made), so it is
    kept. STARTTLS/STLS: plaintext sent before the handshake must never be
    read as protected input (CVE-2011-0411), so it is dropped and logged."""
    stream.pause_reading()
    early = stream.take_buffer()
    if early and not implicit:
        log.warning(
            "[%s]: %d octets sent before the TLS handshake were discarded", peer, len(early)
        )
        return b""
    return early


class ByteStream(Protocol):
    """What the connection driver (net/smtpd.py) uses of a stream: the
    methods of `SmtpStream` below, with its contract. The in-memory
    transcript runner (pigeon.testing.memstream) is the other one."""

    async def read(self, timeout: float | None) -> bytes | None: ...

    def wake(self) -> None: ...

    def take_buffer(self) -> bytes: ...

    def pause_reading(self) -> None: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self, timeout: float) -> None: ...

    async def close_and_wait(self, timeout: float) -> None: ...

    def abort(self) -> None: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...

    async def start_tls(
        self, context: ssl.SSLContext, *, timeout: float, early: bytes = b""
    ) -> None: ...


class SmtpStream(asyncio.Protocol):
    """The Protocol of one accepted connection; see the module contract."""

    def __init__(
        self, on_connected: Callable[[SmtpStream], Any], *, limit: int = READ_LIMIT
    ) -> None:
        self._on_connected = on_connected
        self._limit = limit
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[Any] | None = None
        self._buffer = bytearray()
        self._eof = False
        self._paused_reading = False
        self._reading_stopped = False  # pause_reading() by the driver (STARTTLS)
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._lost = False
        self._closing = False
        self._closed = self._loop.create_future()
        self._tls: TlsEngine | None = None
        self._handshake: asyncio.Future[None] | None = None

    # --- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        result = self._on_connected(self)
        if asyncio.iscoroutine(result):
            self.task = self._loop.create_task(result)

    def data_received(self, data: bytes) -> None:
        if self._tls is not None:
            self._tls_received(data)
        else:
            self._append(data)

    def eof_received(self) -> bool:
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(ConnectionResetError("EOF during the TLS handshake"))
        self._set_eof()
        return True  # keep our side open: replies still go out

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._set_eof()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection lost"))
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(ConnectionResetError("connection lost"))
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
                timer = self._loop.call_later(max(0.0, timeout), _resolve, waiter)
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

    def _append(self, data: bytes) -> None:
        self._buffer += data
        self._wakeup()
        if len(self._buffer) > self._limit and not self._paused_reading:
            self._paused_reading = True
            self._pause_transport()

    def _set_eof(self) -> None:
        self._eof = True
        self._wakeup()

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

    def _pause_transport(self) -> None:
        if self.transport is None:
            return
        try:
            self.transport.pause_reading()
        except (AttributeError, RuntimeError):
            pass  # closing, or a transport that cannot pause

    def _resume_transport(self) -> None:
        if self.transport is None:
            return
        try:
            self.transport.resume_reading()
        except (AttributeError, RuntimeError):
            pass

    # --- writing ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is None or self._lost or self._closing or not data:
            return
        if self._tls is not None:
            data = self._tls.encrypt(data)
            if not data:
                return
        self.transport.write(data)

    async def drain(self, timeout: float) -> None:
        """Wait until the peer has taken enough of our output (see the contract)."""
        if self._lost:
            raise ConnectionResetError("connection lost")
        if not self._write_paused:
            return
        waiter = self._drain_waiter = self._loop.create_future()
        timer = self._loop.call_later(
            max(0.0, timeout), _resolve, waiter, TimeoutError("the peer does not read our replies")
        )
        try:
            await waiter
        finally:
            timer.cancel()
            if self._drain_waiter is waiter:
                self._drain_waiter = None

    def close(self) -> None:
        """Flush what was written (our TLS close_notify last), then close."""
        if self.transport is None or self._closing:
            return
        self._closing = True
        if self._tls is not None and not self._lost:
            alert = self._tls.close()
            if alert:
                self.transport.write(alert)
        self.transport.close()

    async def close_and_wait(self, timeout: float) -> None:
        """`close()`, then abort if the connection is not gone within `timeout` seconds."""
        self.close()
        if self._closed.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), max(0.0, timeout))
        except TimeoutError:
            self.abort()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    def abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._tls.ssl_object if self._tls is not None else default
        if self.transport is None:
            return default
        return self.transport.get_extra_info(name, default)

    # --- TLS ---------------------------------------------------------------------------

    async def start_tls(
        self, context: ssl.SSLContext, *, timeout: float, early: bytes = b""
    ) -> None:
        """Run the server side of a TLS handshake on this connection.

        `early`: octets of the handshake already read (implicit TLS). Raises
        ssl.SSLError, ConnectionResetError (the peer went away) or
        TimeoutError. Reading resumes, now through the TLS engine.
        """
        self._tls = TlsEngine(context)
        self._handshake = self._loop.create_future()
        self._reading_stopped = False
        self._paused_reading = False
        if early:
            self._tls_received(early)
        self._resume_transport()
        try:
            await asyncio.wait_for(self._handshake, max(0.0, timeout))
        finally:
            self._handshake = None

    def _tls_received(self, data: bytes) -> None:
        engine = self._tls
        assert engine is not None
        try:
            plaintext = engine.receive(data)
        except ssl.SSLError as exc:
            self._tls_failed(exc)
            return
        out = engine.pending_output()
        if out and not self._lost and self.transport is not None:
            self.transport.write(out)
        if engine.established and self._handshake is not None and not self._handshake.done():
            self._handshake.set_result(None)
        if plaintext:
            self._append(plaintext)
        if engine.peer_closed:
            self._set_eof()

    def _tls_failed(self, exc: ssl.SSLError) -> None:
        """A broken handshake or record: send the alert, if any, and close."""
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(exc)
        out = self._tls.pending_output() if self._tls is not None else b""
        transport = self.transport
        if out and not self._lost and transport is not None:
            transport.write(out)
        self._closing = True
        self._set_eof()
        if transport is not None:
            transport.close()


def _resolve(waiter: asyncio.Future[None], exc: BaseException | None = None) -> None:
    if not waiter.done():
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)
