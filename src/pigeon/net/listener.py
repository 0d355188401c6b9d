"""Listeners, connection limits and graceful drain for the SMTP service.

Contract:
  * `SmtpServer.start()` binds every configured listener (a failure to bind
    raises `ListenError` naming the address, before anything is served).
  * Each accepted connection runs in its own task inside a fence: whatever
    happens in one session never reaches the others or the server
    (`Connection.run` logs and swallows its own failures).
  * Limits: past `connections` sessions in total, or `connections_per_ip`
    from one client address, a new connection gets 421 4.7.0 and is closed
    without a session (RFC 5321 §3.8 permits 421 at connection time).
  * `drain(grace)`: SIGTERM behaviour. Listeners stay open so that new
    clients get a clear 421 4.3.2 instead of a refused connection; live
    sessions are asked to finish (a transaction in progress completes, then
    421 at the next command); after `grace` seconds remaining sessions are
    cancelled; then the listeners close.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Callable

from pigeon.config.schema import Config, ListenAddress
from pigeon.net.smtpd import Connection
from pigeon.proto import reply as R
from pigeon.proto.server import SessionConfig

log = logging.getLogger("pigeon.smtpd")


class ListenError(RuntimeError):
    """A listener could not be bound."""


class SmtpServer:
    def __init__(self, config: Config, session_config: SessionConfig, *, store, policy,
                 maillog, on_queued: Callable[[str], None]) -> None:
        self.config = config
        self.session_config = session_config
        self.store = store
        self.policy = policy
        self.maillog = maillog
        self.on_queued = on_queued
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: dict[asyncio.Task, Connection] = {}
        self._per_ip: Counter[str] = Counter()
        self._draining = False
        self.total_connections = 0
        self.refused_connections = 0

    @property
    def bound(self) -> list[tuple[str, int]]:
        """The (host, port) pairs actually bound (port 0 resolves to a real port)."""
        out = []
        for server in self._servers:
            for sock in server.sockets:
                name = sock.getsockname()
                out.append((name[0], name[1]))
        return out

    async def start(self) -> None:
        for addr in self.config.listen:
            try:
                server = await asyncio.start_server(self._accept, addr.host, addr.port,
                                                    reuse_address=True, backlog=1024)
            except OSError as exc:
                await self.close()
                raise ListenError(f"cannot listen on {addr}: {exc.strerror or exc}") from exc
            self._servers.append(server)
        for host, port in self.bound:
            log.info("listening on %s", ListenAddress(host, port))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        ip = peer[0] if isinstance(peer, tuple) else str(peer)
        host = self.session_config.hostname
        limits = self.config.limits
        refusal = None
        if self._draining:
            refusal = R.shutting_down(host)
        elif limits.connections and len(self._connections) >= limits.connections:
            refusal = R.too_many_connections(host)
        elif limits.connections_per_ip and self._per_ip[ip] >= limits.connections_per_ip:
            refusal = R.too_many_connections_from_ip(host)
        if refusal is not None:
            self.refused_connections += 1
            log.warning("refused connection from [%s]: %s", ip, refusal)
            await _refuse(writer, refusal)
            return
        self.total_connections += 1
        log.info("connect from [%s]:%s", ip, peer[1] if isinstance(peer, tuple) else "")
        conn = Connection(reader, writer, session_config=self.session_config, store=self.store,
                          policy=self.policy, maillog=self.maillog, on_queued=self.on_queued,
                          greet_pause=self.config.timeouts.greet_pause)
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = conn
        self._per_ip[ip] += 1
        try:
            await conn.run()
        finally:
            del self._connections[task]
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]

    async def drain(self, grace: float) -> None:
        """Finish in-flight sessions (up to `grace` seconds), then close."""
        self._draining = True
        live = list(self._connections.items())
        log.info("draining: %d session(s) in progress, grace %.0fs", len(live), grace)
        for _, conn in live:
            conn.shutdown()
        tasks = [t for t, _ in live]
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("drain: %d session(s) cut off after %.0fs", len(pending), grace)
                await asyncio.wait(pending, timeout=5.0)
        await self.close()

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 5.0)
            except (asyncio.TimeoutError, Exception):
                pass
        self._servers.clear()

    def statistics(self) -> dict:
        return {"sessions": len(self._connections), "connections_total": self.total_connections,
                "connections_refused": self.refused_connections, "draining": self._draining}


async def _refuse(writer: asyncio.StreamWriter, refusal: R.Reply) -> None:
    try:
        writer.write(refusal.to_bytes(enhanced=True))
        await asyncio.wait_for(writer.drain(), 5.0)
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5.0)
    except Exception:
        pass
