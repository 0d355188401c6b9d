"""SmtpStream over real loopback sockets: reads, timeouts, wake, EOF, back-pressure."""

from __future__ import annotations

import asyncio
import socket

import pytest

from pigeon.net.stream import SmtpStream


async def _pair(limit: int = 256 * 1024):
    """A server-side SmtpStream and a client (reader, writer) connected to it."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future = loop.create_future()

    def on_connected(stream: SmtpStream) -> None:
        accepted.set_result(stream)

    server = await loop.create_server(lambda: SmtpStream(on_connected, limit=limit), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    stream = await asyncio.wait_for(accepted, 5)
    return server, stream, reader, writer


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_read_returns_data_then_none_on_timeout_then_eof():
    async def main():
        server, stream, reader, writer = await _pair()
        writer.write(b"EHLO a\r\n")
        await writer.drain()
        assert await stream.read(5) == b"EHLO a\r\n"
        assert await stream.read(0.05) is None  # nothing more: timeout
        writer.close()
        assert await stream.read(5) == b""  # peer closed: EOF
        assert await stream.read(5) == b""  # and it stays so
        stream.close()
        await stream.wait_closed()
        server.close()

    run(main())


def test_wake_interrupts_a_pending_read():
    async def main():
        server, stream, reader, writer = await _pair()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, stream.wake)
        started = loop.time()
        assert await stream.read(10) is None
        assert loop.time() - started < 5
        writer.close()
        stream.close()
        server.close()

    run(main())


def test_write_reaches_the_peer_and_drain_after_loss_raises():
    async def main():
        server, stream, reader, writer = await _pair()
        stream.write(b"220 hello\r\n")
        await stream.drain(5)
        assert await reader.readline() == b"220 hello\r\n"
        assert stream.get_extra_info("peername")[0] == "127.0.0.1"
        stream.close()
        await asyncio.wait_for(stream.wait_closed(), 5)
        with pytest.raises(ConnectionResetError):
            await stream.drain(5)
        stream.write(b"ignored after close")  # never raises
        writer.close()
        server.close()

    run(main())


def test_reading_pauses_past_the_limit_and_resumes_after_read():
    async def main():
        server, stream, reader, writer = await _pair(limit=1024)
        writer.write(b"x" * 200_000)
        await asyncio.sleep(0.2)
        # Paused: far less than what the client sent waits in our buffer.
        assert len(stream._buffer) < 200_000
        assert stream._paused_reading
        got = 0
        while got < 200_000:
            data = await stream.read(5)
            assert data, "EOF or timeout before all data arrived"
            got += len(data)
        assert got == 200_000
        writer.close()
        stream.close()
        server.close()

    run(main())


def test_take_buffer_returns_unread_octets():
    async def main():
        server, stream, reader, writer = await _pair()
        writer.write(b"early")
        await writer.drain()
        await asyncio.sleep(0.1)
        stream.pause_reading()
        assert stream.take_buffer() == b"early"
        assert stream.take_buffer() == b""
        writer.close()
        stream.close()
        server.close()

    run(main())


def test_replies_still_reach_a_peer_that_half_closed():
    """EOF from the peer (SHUT_WR) leaves our side open: what we write after
    it still arrives, and the connection closes only when we close it."""

    async def main():
        server, stream, reader, writer = await _pair()
        writer.write(b".\r\nQUIT\r\n")
        writer.write_eof()
        got = b""
        while True:
            data = await stream.read(5)
            assert data is not None, "timeout before EOF"
            if not data:
                break
            got += data
        assert got == b".\r\nQUIT\r\n"
        await asyncio.sleep(0.05)  # give a wrongly closing transport time to close
        stream.write(b"250 2.0.0 Ok: queued as X\r\n221 2.0.0 bye\r\n")
        await stream.close_and_wait(5)
        assert (
            await asyncio.wait_for(reader.read(), 5)
            == b"250 2.0.0 Ok: queued as X\r\n221 2.0.0 bye\r\n"
        )
        writer.close()
        server.close()

    run(main())


async def _non_reading_pair():
    """A server stream and a raw client socket with a tiny receive buffer that never reads."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future = loop.create_future()
    server = await loop.create_server(lambda: SmtpStream(accepted.set_result), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.setblocking(False)
    await loop.sock_connect(client, ("127.0.0.1", port))
    stream = await asyncio.wait_for(accepted, 5)
    stream.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return server, stream, client


def test_drain_is_bounded_when_the_peer_never_reads():
    async def main():
        server, stream, client = await _non_reading_pair()
        for _ in range(200):  # far more than both socket buffers
            stream.write(b"x" * 4096)
        with pytest.raises(TimeoutError):
            await stream.drain(0.2)
        stream.abort()
        await asyncio.wait_for(stream.wait_closed(), 5)
        client.close()
        server.close()

    run(main())


def test_close_and_wait_aborts_when_the_output_is_never_read():
    async def main():
        server, stream, client = await _non_reading_pair()
        stream.write(b"x" * 1_000_000)
        await asyncio.wait_for(stream.close_and_wait(0.2), 5)
        await asyncio.wait_for(stream.wait_closed(), 5)  # gone, not waiting to flush forever
        client.close()
        server.close()

    run(main())
