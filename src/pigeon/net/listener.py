"""Listeners, connection limits and graceful drain for the SMTP service.

Contract:
  * `SmtpServer.start()` binds every configured listener (a failure to bind
    raises `ListenError` naming the address, the role, and the configuration
    key and `pigeon serve` flag that set it, before anything is served).
  * Each accepted connection runs in its own task inside a fence: whatever
    happens in one session never reaches the others or the server
    (`Connection.run` logs and swallows its own failures).
  * Limits: past `connections` sessions in total, or `connections_per_ip`
    from one client address, a new connection gets 421 4.7.0 and is closed
    without a session (RFC 5321 §3.8 permits 421 at connection time).
  * Roles (issue 4): every address in `listen` is role "smtp" (STARTTLS
    offered when `tls.starttls`; AUTH only with `auth.smtp_listener`),
    `submission_listen` is role "submission" (RFC 6409: STARTTLS, AUTH
    required before MAIL) and `submissions_listen` role "submissions"
    (RFC 8314: the TLS handshake comes first, then the greeting; AUTH
    required). `role_session_config` derives each role's SessionConfig.
    Connection limits count every role together.
  * `drain(grace)`: SIGTERM behaviour. Listeners stay open so that new
    clients get a clear 421 4.3.2 instead of a refused connection; live
    sessions are asked to finish (a transaction in progress completes, then
    421 at the next command); after `grace` seconds remaining sessions are
    cancelled; then the listeners close.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

from pigeon.config.schema import Config, ListenAddress
from pigeon.net.services import ConnectionContext, ReceiveServices
from pigeon.net.smtpd import Connection
from pigeon.net.stream import SmtpStream
from pigeon.policy.pipeline import ReceivePipeline
from pigeon.proto import reply as R
from pigeon.proto.server import SessionConfig

log = logging.getLogger("pigeon.smtpd")


class ListenError(RuntimeError):
    """A listener could not be bound."""


ROLES = ("smtp", "submission", "submissions")

#: role -> (configuration key, `pigeon serve` flag) that sets its addresses.
ROLE_KEYS = {
    "smtp": ("listen", "--listen"),
    "submission": ("submission_listen", "--submission-listen"),
    "submissions": ("submissions_listen", "--submissions-listen"),
}

#: Seconds a refused connection may take to read its 421 before it is aborted.
REFUSE_TIMEOUT = 5.0


def bind_reason(exc: OSError) -> str:
    """ "Address already in use": the event loops word their own text around
    the errno (or drop its strerror); say it one way."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def bind_failure(addr: ListenAddress, role: str, exc: OSError) -> str:
    """Why `addr` could not be bound, and which key or flag moves it (or turns the role off)."""
    key, flag = ROLE_KEYS[role]
    off = "" if role == "smtp" else f'; {key} = [] or {flag} "" turns the role off'
    return (
        f"cannot listen on {addr} ({role}): {bind_reason(exc)} "
        f"(set by {key} in the configuration or {flag}{off})"
    )


def role_session_config(
    config: Config, base: SessionConfig, role: str, *, tls: bool, auth: bool
) -> SessionConfig:
    """The SessionConfig for one listener role (see the module contract).

    `tls`: a TlsProvider exists; `auth`: an AuthService exists.
    """
    mechanisms = config.auth.mechanisms if auth else ()
    if role == "smtp":
        return dataclasses.replace(
            base,
            starttls=tls and config.tls.starttls,
            auth_mechanisms=mechanisms if config.auth.smtp_listener else (),
        )
    if role == "submission":
        return dataclasses.replace(
            base, starttls=tls, auth_mechanisms=mechanisms, auth_required=True
        )
    if role == "submissions":
        return dataclasses.replace(
            base, starttls=False, auth_mechanisms=mechanisms, auth_required=True
        )
    raise ValueError(f"unknown listener role {role!r}")


def configured_listeners(config: Config, *, tls: bool) -> list[tuple[ListenAddress, str]]:
    """(address, role) for every listener of `config`; the TLS roles only with `tls`."""
    out = [(a, "smtp") for a in config.listen]
    if tls:
        out += [(a, "submission") for a in config.submission_listen]
        out += [(a, "submissions") for a in config.submissions_listen]
    return out


class SmtpServer:
    """The listeners of one configuration and the connections they accepted.

    `services` (net/services.py) is what every new connection gets; the
    pieces a reload or a worker process replaces (`pipeline`, `tls`,
    `on_queued`) are properties that swap them in a new services object, so
    sessions in progress keep the one they started with.
    """

    def __init__(
        self, config: Config, session_config: SessionConfig, services: ReceiveServices
    ) -> None:
        self.config = config
        self.session_config = session_config
        self._rewire(services)
        self._servers: list[asyncio.base_events.Server] = []
        self._roles: dict[object, str] = {}
        self._keys: dict[object, tuple[ListenAddress, str]] = {}
        self._connections: dict[asyncio.Task[Any], Connection] = {}
        self._per_ip: Counter[str] = Counter()
        self._draining = False
        self.total_connections = 0
        self.refused_connections = 0

    def _rewire(self, services: ReceiveServices) -> None:
        """New connections get `services`: each role's settings and context,
        made once here rather than per connection."""
        self.services = services
        self.role_configs = {
            role: role_session_config(
                self.config,
                self.session_config,
                role,
                tls=services.tls is not None,
                auth=services.logins is not None,
            )
            for role in ROLES
        }
        self._contexts = {
            role: ConnectionContext(services, self.role_configs[role], role) for role in ROLES
        }

    @property
    def metrics(self) -> Any:
        return self.services.metrics

    @property
    def maillog(self) -> Any:
        return self.services.maillog

    @property
    def pipeline(self) -> ReceivePipeline:
        return self.services.pipeline

    @property
    def tls(self) -> Any:
        return self.services.tls

    @tls.setter
    def tls(self, provider: Any) -> None:
        """A reloaded certificate: new connections get the new context."""
        self._rewire(dataclasses.replace(self.services, tls=provider))

    @property
    def on_queued(self) -> Callable[[Any], None]:
        return self.services.on_queued

    @on_queued.setter
    def on_queued(self, hand_over: Callable[[Any], None]) -> None:
        self._rewire(dataclasses.replace(self.services, on_queued=hand_over))

    @property
    def bound(self) -> list[tuple[str, int]]:
        """The (host, port) pairs actually bound (port 0 resolves to a real port)."""
        out = []
        for server in self._servers:
            for sock in server.sockets:
                name = sock.getsockname()
                out.append((name[0], name[1]))
        return out

    def listeners(self) -> list[tuple[ListenAddress, str]]:
        """(address, role) for every configured listener; TLS roles only with TLS."""
        return configured_listeners(self.config, tls=self.tls is not None)

    async def _bind(
        self, addr: ListenAddress, role: str, sock: socket.socket | None = None
    ) -> None:
        """Listen on `addr` for `role` (or serve the already bound `sock`, shared
        by several worker processes); OSError when the address cannot be bound."""

        def factory(role: str = role) -> SmtpStream:
            return SmtpStream(lambda stream: self._accept(stream, role))

        # Implicit TLS (role submissions) is not `ssl=` here: the driver runs
        # the handshake itself so that it can log failures.
        loop = asyncio.get_running_loop()
        if sock is not None:
            server = await loop.create_server(factory, sock=sock, backlog=1024)
        else:
            server = await loop.create_server(
                factory, addr.host, addr.port, reuse_address=True, backlog=1024
            )
        self._servers.append(server)
        self._roles[server] = role
        self._keys[server] = (addr, role)

    async def start(
        self, sockets: dict[tuple[ListenAddress, str], socket.socket] | None = None
    ) -> None:
        """Bind every listener, or serve `sockets` ({(address, role): socket})
        bound before the worker processes were forked."""
        for addr, role in self.listeners():
            try:
                await self._bind(addr, role, (sockets or {}).get((addr, role)))
            except OSError as exc:
                await self.close()
                raise ListenError(bind_failure(addr, role, exc)) from exc
        for server in self._servers:
            for sock in server.sockets:
                name = sock.getsockname()
                log.info(
                    "listening on %s (%s)", ListenAddress(name[0], name[1]), self._roles[server]
                )

    async def reconfigure(
        self, config: Config, session_config: SessionConfig, pipeline: ReceivePipeline
    ) -> list[str]:
        """SIGHUP: new sessions get the new settings; live ones keep theirs.

        Listeners are compared by (address, role): removed ones are closed
        (their sessions go on), added ones are bound. A listener that cannot
        be bound is logged and left out (the others keep serving); the
        returned list says why, one line each.
        """
        failed: list[str] = []
        self.config = config
        self.session_config = session_config
        self._rewire(
            dataclasses.replace(
                self.services,
                pipeline=pipeline,
                greet_pause=config.timeouts.greet_pause,
                handshake_timeout=config.tls.handshake_timeout,
            )
        )
        wanted = set(self.listeners())
        for server in list(self._servers):
            if self._keys.get(server) not in wanted:
                addr, role = self._keys.pop(server)
                server.close()
                self._servers.remove(server)
                self._roles.pop(server, None)
                log.info("reload: stopped listening on %s (%s)", addr, role)
        present = set(self._keys.values())
        for addr, role in self.listeners():
            if (addr, role) in present:
                continue
            try:
                await self._bind(addr, role)
            except OSError as exc:
                failed.append(bind_failure(addr, role, exc))
                log.error("reload: %s", failed[-1])
                continue
            log.info("reload: listening on %s (%s)", addr, role)
        return failed

    def bound_roles(self) -> list[tuple[str, int, str]]:
        """(host, port, role) actually bound."""
        return [
            (s.getsockname()[0], s.getsockname()[1], self._roles[server])
            for server in self._servers
            for s in server.sockets
        ]

    async def _accept(self, stream: SmtpStream, role: str = "smtp") -> None:
        peer = stream.get_extra_info("peername") or ("?", 0)
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
            self.metrics.connection_refused()
            log.warning("refused connection from [%s]: %s", ip, refusal)
            self.maillog.reject(None, "CONNECT", ip, refusal)
            await _refuse(stream, refusal)
            return
        self.total_connections += 1
        self.metrics.connection_opened(role)
        log.info("connect from [%s]:%s (%s)", ip, peer[1] if isinstance(peer, tuple) else "", role)
        conn = Connection(stream, self._contexts[role])
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
            except (TimeoutError, Exception):
                pass
        self._servers.clear()

    def statistics(self) -> dict[str, Any]:
        return {
            "sessions": len(self._connections),
            "connections_total": self.total_connections,
            "connections_refused": self.refused_connections,
            "draining": self._draining,
        }


async def _refuse(stream: SmtpStream, refusal: R.Reply) -> None:
    """Write the 421 and close; bounded, so a peer that does not read cannot
    keep the socket (the transport is aborted after REFUSE_TIMEOUT)."""
    stream.write(refusal.to_bytes(enhanced=True))
    await stream.close_and_wait(REFUSE_TIMEOUT)
