"""Closing an outbound connection is bounded even when the peer stops reading."""

from __future__ import annotations

import asyncio
import socket

from pigeon.delivery import smtpc
from pigeon.proto.client import ClientConfig


async def _server_that_stops_reading():
    """Greets and answers EHLO, then never reads again (until the test ends)."""
    stop = asyncio.Event()

    async def handle(reader, writer):
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(b"220 peer.test ESMTP\r\n")
        await reader.readline()
        writer.write(b"250 peer.test\r\n")
        await stop.wait()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], stop


def test_abort_drops_unsent_output_after_close_timeout(monkeypatch):
    monkeypatch.setattr(smtpc, "CLOSE_TIMEOUT", 0.2, raising=False)

    async def main():
        server, port, stop = await _server_that_stops_reading()
        conn = await smtpc.connect(
            ClientConfig(tls="none"),
            host="peer.test",
            address="127.0.0.1",
            port=port,
            helo_name="client.test",
        )
        transport = conn.writer.transport
        conn.writer.write(b"x" * 20_000_000)  # far more than the peer will take
        conn.abort()
        # Without a bound the transport would hold the socket until the peer reads.
        for _ in range(60):  # at most 3 s
            if transport.get_extra_info("socket") is None or transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.05)
        assert transport.get_write_buffer_size() == 0, "unsent output still held"
        stop.set()
        server.close()

    asyncio.run(asyncio.wait_for(main(), 30))
