"""Listeners for any protocol: bind addresses by role, admit connections within limits, drain.

    listeners = Listeners(service, [(ListenAddress("0.0.0.0", 25), SMTP)], limits=limits)
    await listeners.start()              # or start(sockets) bound before worker processes forked
    ...
    await listeners.stop_accepting()     # the stop: the listening sockets close at once
    await listeners.drain(grace)         # sessions asked to finish, the rest cut off at `grace`

Contract:
  * Generic: this module knows no protocol. A *service* (the SMTP server,
    net/smtp_service.py; POP3, readers/pop3_service.py) gives it two things
    (`ByRole` puts several services behind one set of listeners):
      - `service.session(stream, role, peer)`: the connection-handler
        factory, called once per admitted connection; the returned `Session`
        is run to its end (`run()`), asked to finish early by `shutdown()`
        and told the grace is over by `cut_off()`;
      - `service.refuse(stream, role, refusal, peer)`: the protocol's way of
        turning a connection away (SMTP: a 421 reply), written and closed
        within the service's own bound.
    A listener is an (address, `ListenerRole`) pair; the role names its
    service role ("smtp", "submission"...) and the configuration key and
    `pigeon serve` flag that set its addresses, so a bind error can say how
    to fix it (`bind_failure`).
  * `start()` binds every listener, or serves sockets bound beforehand (worker
    processes share them: `bind_sockets`; `pigeon restart` passes them on,
    net/inherit.py); a failure to bind raises `ListenError` naming the
    address, the role, the key and the flag, and closes what was bound,
    before anything is served. `managed` sockets (a service manager's,
    net/inherit.py) replace the configured addresses of their roles, now and
    at every reload. `serving()` lists what is served, for `pigeon restart`.
  * Each admitted connection runs in its own task inside a fence: whatever
    happens in one session never reaches the others or the listeners (the
    service's sessions log and swallow their own failures).
  * Limits (`ConnectionLimits`): past `total` sessions in all, or `per_ip`
    from one client address, a newcomer is refused (RFC 5321 §3.8 permits a
    421 at connection time). Every role of one `Listeners` counts together,
    but the roles of a `ListenerRole.group` named in `limits.groups` (the
    mail readers: an idle IMAP client must not take an SMTP slot), which
    count apart, under that group's own limits.
  * `reconfigure(listeners, limits)`: reload. Listeners are compared by
    (address, role): removed ones are closed (their sessions go on), added
    ones bound; one that cannot be bound is logged, left out, and its
    reason returned (the others keep serving). Limits apply to newcomers.
  * The stop (the lifecycle, pigeon.app, decides when; this module never
    watches signals): `stop_accepting()` closes the listening sockets at
    once (under socket activation or `pigeon restart` another process holds
    the same sockets, so nothing is refused). `drain(grace)`: live sessions
    are asked to finish (`shutdown()`), and so is one whose connection was
    accepted just before the sockets closed (it is served, not refused);
    after `grace` seconds each one left is cut off (`cut_off()`: SMTP
    answers 421 4.3.2 and closes) and given CUT_OFF_WAIT seconds; what still
    runs then is cancelled and waited for at most CANCEL_WAIT. So `drain`
    returns within grace + CUT_OFF_WAIT + CANCEL_WAIT whatever the peers do.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pigeon.config.schema import ListenAddress
from pigeon.net.stream import SmtpStream

__all__ = [
    "ByRole",
    "ConnectionLimits",
    "ListenError",
    "Listener",
    "ListenerRole",
    "Listeners",
    "Refusal",
    "Service",
    "Session",
    "bind_failure",
    "bind_reason",
    "bind_sockets",
]

log = logging.getLogger("pigeon.net")

BACKLOG = 1024

#: Seconds sessions cut off at the end of the grace have to close by themselves.
CUT_OFF_WAIT = 1.5
#: Seconds cancelled sessions have to unwind (module contract, `drain`).
CANCEL_WAIT = 0.5


class ListenError(RuntimeError):
    """A listener could not be bound."""


@dataclass(frozen=True, slots=True)
class ListenerRole:
    """What a listener is for: its service role, and where its addresses are configured."""

    name: str  # "smtp", "submission", "submissions"; later "pop3", "imap"...
    key: str  # the configuration key listing its addresses ("submission_listen")
    flag: str  # the `pigeon serve` flag that replaces them ("--submission-listen")
    optional: bool = True  # `key = []` / `flag ""` turns the role off
    group: str = ""  # roles whose sessions count together apart ("imap": imap + imaps)


#: One listener: where, and for what.
Listener = tuple[ListenAddress, ListenerRole]

#: Sockets bound before worker processes were forked, by (address, role name).
BoundSockets = Mapping[tuple[ListenAddress, str], socket.socket]


class Refusal(enum.Enum):
    """Why a connection is turned away before its session starts."""

    TOO_MANY = "too many connections"
    TOO_MANY_FROM_IP = "too many connections from this address"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    total: int = 0  # simultaneous sessions in all; 0 = none
    per_ip: int = 0  # simultaneous sessions from one client address; 0 = none
    #: ListenerRole.group -> the limits of the roles counted apart (module contract).
    groups: Mapping[str, ConnectionLimits] = field(default_factory=dict)

    def bucket(self, role: ListenerRole) -> tuple[str, ConnectionLimits]:
        """Which count a session of `role` is in, and its limits."""
        if role.group and role.group in self.groups:
            return role.group, self.groups[role.group]
        return "", self


class Session(Protocol):
    """One connection's handler, made by the service's factory."""

    async def run(self) -> None: ...

    def shutdown(self) -> None:
        """Finish what is in progress, then close (SIGTERM)."""
        ...

    def cut_off(self) -> None:
        """The grace is over: say goodbye in the protocol's words now, and close."""
        ...


class Service(Protocol):
    """A protocol served on listeners (see the module contract)."""

    def session(self, stream: SmtpStream, role: ListenerRole, peer: tuple[str, int]) -> Session:
        """The connection-handler factory: a handler for one admitted connection."""
        ...

    async def refuse(
        self, stream: SmtpStream, role: ListenerRole, refusal: Refusal, peer: tuple[str, int]
    ) -> None:
        """Turn the connection away in the protocol's words, and close it (bounded)."""
        ...


class ByRole:
    """One `Service` made of several, chosen by the listener's role name: the
    SMTP roles and the readers' (POP3...) served by one `Listeners`, so that
    they share its connection limits, its drain and `pigeon restart`."""

    def __init__(self, services: Mapping[str, Service]) -> None:
        self.services = dict(services)

    def session(self, stream: SmtpStream, role: ListenerRole, peer: tuple[str, int]) -> Session:
        return self.services[role.name].session(stream, role, peer)

    async def refuse(
        self, stream: SmtpStream, role: ListenerRole, refusal: Refusal, peer: tuple[str, int]
    ) -> None:
        await self.services[role.name].refuse(stream, role, refusal, peer)


class ConnectionMetrics(Protocol):
    def connection_opened(self, role: str = "smtp") -> None: ...

    def connection_refused(self) -> None: ...


class _NoMetrics:
    def connection_opened(self, role: str = "smtp") -> None:
        pass

    def connection_refused(self) -> None:
        pass


def bind_reason(exc: OSError) -> str:
    """ "Address already in use": the event loops word their own text around
    the errno (or drop its strerror); say it one way."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def bind_failure(addr: ListenAddress, role: ListenerRole, exc: OSError) -> str:
    """Why `addr` could not be bound, and which key or flag moves it (or turns the role off)."""
    off = ""
    if role.optional:
        off = f'; {role.key} = [] or {role.flag} "" turns the role off'
    return (
        f"cannot listen on {addr} ({role.name}): {bind_reason(exc)} "
        f"(set by {role.key} in the configuration or {role.flag}{off})"
    )


def bind_sockets(
    listeners: Sequence[Listener], *, patience: float = 3.0
) -> dict[tuple[ListenAddress, str], socket.socket]:
    """Bind every listener now (before worker processes are forked, so they share
    the sockets). EADDRINUSE is retried for `patience` seconds: after a crash,
    the workers of the previous run may still be dying. ListenError as `start()`."""
    out: dict[tuple[ListenAddress, str], socket.socket] = {}
    for addr, role in listeners:
        family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
        deadline = time.monotonic() + patience
        while True:
            try:
                sock = socket.create_server((addr.host, addr.port), family=family, backlog=BACKLOG)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    for s in out.values():
                        s.close()
                    raise ListenError(bind_failure(addr, role, exc)) from exc
                time.sleep(0.05)  # bounded by `patience`
        sock.setblocking(False)
        out[(addr, role.name)] = sock
    return out


def _peer(stream: SmtpStream) -> tuple[str, int]:
    peer = stream.get_extra_info("peername") or ("?", 0)
    if isinstance(peer, tuple):
        return str(peer[0]), int(peer[1]) if len(peer) > 1 else 0
    return str(peer), 0


class Listeners:
    """The listeners of one service (see the module contract)."""

    def __init__(
        self,
        service: Service,
        listeners: Sequence[Listener],
        *,
        limits: ConnectionLimits = ConnectionLimits(),
        metrics: ConnectionMetrics | None = None,
    ) -> None:
        self.service = service
        self.metrics: ConnectionMetrics = metrics if metrics is not None else _NoMetrics()
        self._wanted: list[Listener] = list(listeners)
        self._limits = limits
        self._servers: dict[asyncio.Server, Listener] = {}
        self._managed: dict[Listener, socket.socket] = {}
        self._sessions: dict[asyncio.Task[Any], Session] = {}
        self._per_ip: Counter[tuple[str, str]] = Counter()  # (bucket, address)
        self._in_bucket: Counter[str] = Counter()  # ConnectionLimits.bucket
        self._draining = False
        self.total_connections = 0
        self.refused_connections = 0

    # --- binding -----------------------------------------------------------------------

    async def _bind(self, listener: Listener, sock: socket.socket | None = None) -> None:
        """Listen on `listener` (or serve the already bound `sock`); OSError when it cannot."""
        addr, role = listener

        def factory() -> SmtpStream:
            return SmtpStream(lambda stream: self._accept(stream, role))

        loop = asyncio.get_running_loop()
        if sock is not None:
            server = await loop.create_server(factory, sock=sock, backlog=BACKLOG)
        else:
            server = await loop.create_server(
                factory, addr.host, addr.port, reuse_address=True, backlog=BACKLOG
            )
        self._servers[server] = listener

    async def start(
        self,
        sockets: BoundSockets | None = None,
        *,
        managed: Sequence[tuple[Listener, socket.socket]] = (),
    ) -> None:
        """Bind every listener, or serve `sockets` bound before (worker processes,
        `pigeon restart`); `managed` replace their roles' addresses."""
        self._managed = dict(managed)
        self._wanted = self._with_managed(self._wanted)
        given = {**(sockets or {}), **{(a, r.name): s for (a, r), s in self._managed.items()}}
        for addr, role in self._wanted:
            try:
                await self._bind((addr, role), given.get((addr, role.name)))
            except OSError as exc:
                await self.close()
                raise ListenError(bind_failure(addr, role, exc)) from exc
        for (_, role), name in self._bound_names():
            log.info("listening on %s (%s)", name, role.name)

    def _with_managed(self, listeners: Sequence[Listener]) -> list[Listener]:
        """`listeners` with the roles of managed sockets served by those alone."""
        roles = {role.name for _, role in self._managed}
        kept = [(a, r) for a, r in listeners if r.name not in roles]
        return kept + list(self._managed)

    def serving(self) -> list[tuple[Listener, int, bool]]:
        """(listener, file descriptor, managed?) of every listening socket served."""
        return [
            (listener, sock.fileno(), listener in self._managed)
            for server, listener in self._servers.items()
            for sock in server.sockets
        ]

    def _bound_names(self) -> list[tuple[Listener, ListenAddress]]:
        return [
            (listener, ListenAddress(*sock.getsockname()[:2]))
            for server, listener in self._servers.items()
            for sock in server.sockets
        ]

    async def reconfigure(
        self, listeners: Sequence[Listener], limits: ConnectionLimits
    ) -> list[str]:
        """Reload: see the module contract. Returns why listeners could not be bound."""
        self._limits = limits
        self._wanted = self._with_managed(listeners)
        wanted = set(self._wanted)
        for server, listener in list(self._servers.items()):
            if listener not in wanted:
                del self._servers[server]
                server.close()
                log.info("reload: stopped listening on %s (%s)", listener[0], listener[1].name)
        present = set(self._servers.values())
        failed: list[str] = []
        for addr, role in self._wanted:
            if (addr, role) in present:
                continue
            try:
                await self._bind((addr, role))
            except OSError as exc:
                failed.append(bind_failure(addr, role, exc))
                log.error("reload: %s", failed[-1])
                continue
            log.info("reload: listening on %s (%s)", addr, role.name)
        return failed

    @property
    def bound(self) -> list[tuple[str, int]]:
        """The (host, port) pairs actually bound (port 0 resolves to a real port)."""
        return [(name.host, name.port) for _, name in self._bound_names()]

    def bound_roles(self) -> list[tuple[str, int, str]]:
        """(host, port, role name) actually bound."""
        return [(name.host, name.port, role.name) for (_, role), name in self._bound_names()]

    # --- connections -------------------------------------------------------------------

    def _refusal(self, bucket: str, limits: ConnectionLimits, ip: str) -> Refusal | None:
        if limits.total and self._in_bucket[bucket] >= limits.total:
            return Refusal.TOO_MANY
        if limits.per_ip and self._per_ip[bucket, ip] >= limits.per_ip:
            return Refusal.TOO_MANY_FROM_IP
        return None

    async def _accept(self, stream: SmtpStream, role: ListenerRole) -> None:
        peer = _peer(stream)
        ip = peer[0]
        bucket, limits = self._limits.bucket(role)
        refusal = self._refusal(bucket, limits, ip)
        if refusal is not None:
            self.refused_connections += 1
            self.metrics.connection_refused()
            await self.service.refuse(stream, role, refusal, peer)
            return
        self.total_connections += 1
        self.metrics.connection_opened(role.name)
        session = self.service.session(stream, role, peer)
        if self._draining:  # accepted just as the stop closed the sockets
            session.shutdown()
        task = asyncio.current_task()
        assert task is not None
        self._sessions[task] = session
        self._per_ip[bucket, ip] += 1
        self._in_bucket[bucket] += 1
        try:
            await session.run()
        finally:
            del self._sessions[task]
            self._in_bucket[bucket] -= 1
            self._per_ip[bucket, ip] -= 1
            if self._per_ip[bucket, ip] <= 0:
                del self._per_ip[bucket, ip]

    # --- the end ---------------------------------------------------------------------------

    async def settle(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for the sessions in progress to end by
        themselves (nobody is asked to finish: `pigeon restart`); how many are left."""
        tasks = list(self._sessions)
        if not tasks:
            return 0
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return len(pending)

    async def stop_accepting(self) -> None:
        """The stop: close the listening sockets now (module contract)."""
        self._draining = True
        servers, self._servers = list(self._servers), {}
        for server in servers:
            server.close()

    async def drain(self, grace: float) -> None:
        """Let sessions finish for `grace` seconds, then cut off the rest (module contract)."""
        await self.stop_accepting()
        log.info("draining: %d session(s) in progress, grace %gs", len(self._sessions), grace)
        for session in self._sessions.values():
            session.shutdown()
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        # Sessions accepted meanwhile (see `_accept`) are waited for too.
        while self._sessions and (left := end - loop.time()) > 0:
            await asyncio.wait(list(self._sessions), timeout=left)
        live = dict(self._sessions)
        if not live:
            return
        log.warning(
            "drain: %d session(s) still open after %gs: answered 421 4.3.2 and closed",
            len(live),
            grace,
        )
        for session in live.values():
            session.cut_off()
        _, pending = await asyncio.wait(live, timeout=CUT_OFF_WAIT)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=CANCEL_WAIT)

    async def close(self) -> None:
        servers, self._servers = list(self._servers), {}
        for server in servers:
            server.close()
        for server in servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 5.0)
            except Exception:  # TimeoutError included: closing must never hang or raise
                pass

    def statistics(self) -> dict[str, Any]:
        return {
            "sessions": len(self._sessions),
            "connections_total": self.total_connections,
            "connections_refused": self.refused_connections,
            "draining": self._draining,
        }
