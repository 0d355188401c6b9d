"""Listening sockets inherited from the process that started us (sd_listen_fds protocol).

    inherited = listen_fds()                    # LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES, once
    plan = assign(inherited, wanted, ROLES, bound=restart_listeners())
    listeners.start(plan.bound, managed=plan.managed)

Contract:
  * The protocol is systemd's (sd_listen_fds(3)): `LISTEN_PID` is our pid
    (else the variables were meant for another process and are ignored),
    `LISTEN_FDS` the count of descriptors starting at 3 (SD_LISTEN_FDS_START),
    `LISTEN_FDNAMES` their names separated by ":" (systemd's
    `FileDescriptorName=`; a missing name is "unknown"). `listen_fds()`
    reads them once and removes them (and `PIGEON_RESTART_LISTENERS`) from
    the environment, so no process we start later takes them for its own;
    it marks every descriptor close-on-exec. Each must be a listening TCP
    socket (IPv4 or IPv6), else `ListenError` naming the descriptor.
  * Two kinds of inherited sockets (`assign`):
      - *managed*: given by a service manager (systemd's pigeon.socket,
        systemd-socket-activate). The service manager decides the
        addresses: a role that receives one or more managed sockets listens
        on exactly those, and its configured addresses are not bound; the
        other roles bind their configured addresses as usual. A managed
        socket serves the role its name says ("smtp", "submission",
        "submissions"); under any other name, the role whose configured
        address it is bound to (same IP and port), else, for a socket bound
        to the wildcard address (0.0.0.0 or ::), the one role configured
        with its port. A socket that maps to no role, or to two, is a
        `ListenError` saying how to name it.
      - *bound*: sockets the previous pigeon bound from its configuration,
        passed on by `pigeon restart` (app/handover.py). They are the last
        descriptors; `PIGEON_RESTART_LISTENERS` (JSON: [[role, host, port],
        ...]) names the configured listener each one was bound for. One
        whose listener the (possibly changed) configuration still has is
        reused as it is, so no connection is refused across the restart;
        the others are closed, and new addresses are bound as usual.
  * `assign` returns the plan: `managed` (listener, socket) pairs, `bound`
    sockets by (address, role name) for `Listeners.start`, and what it
    closed. It never binds anything itself.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import logging
import os
import socket
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field

from pigeon.config.schema import ListenAddress
from pigeon.net.listener import Listener, ListenerRole, ListenError

__all__ = [
    "InheritedSocket",
    "ListenPlan",
    "RESTART_LISTENERS",
    "SD_LISTEN_FDS_START",
    "assign",
    "listen_fds",
    "restart_environment",
]

log = logging.getLogger("pigeon.net")

SD_LISTEN_FDS_START = 3
#: Names the configured listener of each descriptor `pigeon restart` passes on.
RESTART_LISTENERS = "PIGEON_RESTART_LISTENERS"
_WILDCARDS = frozenset({"0.0.0.0", "::"})


@dataclass(frozen=True, slots=True)
class InheritedSocket:
    fd: int
    name: str
    sock: socket.socket
    address: ListenAddress  # where it is bound (getsockname)

    def describe(self) -> str:
        return f'{self.address} (file descriptor {self.fd}, name "{self.name}")'


@dataclass(slots=True)
class ListenPlan:
    """What the inherited sockets become (see the module contract)."""

    managed: list[tuple[Listener, socket.socket]] = field(default_factory=list)
    bound: dict[tuple[ListenAddress, str], socket.socket] = field(default_factory=dict)
    closed: list[str] = field(default_factory=list)


def _listening_tcp(sock: socket.socket) -> bool:
    try:
        accepting = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        return False
    return (
        sock.family in (socket.AF_INET, socket.AF_INET6)
        and sock.type == socket.SOCK_STREAM
        and bool(accepting)
    )


def listen_fds(
    environ: MutableMapping[str, str] | None = None,
    *,
    first_fd: int = SD_LISTEN_FDS_START,
) -> tuple[list[InheritedSocket], list[tuple[str, ListenAddress]]]:
    """The inherited sockets, and the restart descriptions of the last ones
    (see the contract); the variables are removed from `environ`.
    `first_fd`: a seam for tests (the protocol says 3)."""
    env = os.environ if environ is None else environ
    pid, count = env.pop("LISTEN_PID", ""), env.pop("LISTEN_FDS", "")
    names = env.pop("LISTEN_FDNAMES", "")
    described = env.pop(RESTART_LISTENERS, "")
    if not count or pid != str(os.getpid()):
        return [], []
    if not count.isdigit():
        raise ListenError(f"LISTEN_FDS={count!r}: not a number of file descriptors")
    labels = names.split(":") if names else []
    out: list[InheritedSocket] = []
    for i in range(int(count)):
        fd = first_fd + i
        name = labels[i] if i < len(labels) and labels[i] else "unknown"
        try:
            fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise ListenError(
                f'inherited file descriptor {fd} (name "{name}"): {exc.strerror or exc}'
            ) from None
        if not _listening_tcp(sock):
            sock.detach()
            raise ListenError(
                f'inherited file descriptor {fd} (name "{name}") is not a listening TCP socket'
            )
        sock.setblocking(False)
        host, port = sock.getsockname()[:2]
        out.append(InheritedSocket(fd, name, sock, ListenAddress(host, port)))
    return out, _restart_descriptions(described)


def _restart_descriptions(text: str) -> list[tuple[str, ListenAddress]]:
    if not text:
        return []
    try:
        return [
            (str(role), ListenAddress(str(host), int(port)))
            for role, host, port in json.loads(text)
        ]
    except (ValueError, TypeError) as exc:
        raise ListenError(
            f"{RESTART_LISTENERS} is not a list of [role, host, port]: {exc}"
        ) from None


def restart_environment(listeners: Sequence[Listener]) -> str:
    """`PIGEON_RESTART_LISTENERS` for the configured `listeners` passed on last."""
    return json.dumps([[role.name, addr.host, addr.port] for addr, role in listeners])


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def _role_for(
    inherited: InheritedSocket, wanted: Sequence[Listener], roles: Sequence[ListenerRole]
) -> ListenerRole:
    by_name = {role.name: role for role in roles}
    if inherited.name in by_name:
        return by_name[inherited.name]
    addr = inherited.address
    exact = {role for a, role in wanted if a.port == addr.port and _same_ip(a.host, addr.host)}
    if not exact and addr.host in _WILDCARDS:
        exact = {role for a, role in wanted if a.port == addr.port}
    if len(exact) == 1:
        return exact.pop()
    why = "no listener role is configured at that address" if not exact else "two roles claim it"
    names = "|".join(role.name for role in roles)
    raise ListenError(
        f"inherited socket {inherited.describe()}: {why}; name it for its role "
        f"(FileDescriptorName={names} in the socket unit) or list its address in "
        f"{', '.join(role.key for role in roles)}"
    )


def assign(
    inherited: Sequence[InheritedSocket],
    wanted: Sequence[Listener],
    roles: Sequence[ListenerRole],
    *,
    restart: Sequence[tuple[str, ListenAddress]] = (),
) -> ListenPlan:
    """What each inherited socket becomes (see the module contract).
    `wanted`: the configured listeners; `roles`: every role there is;
    `restart`: the descriptions of the last len(restart) sockets."""
    plan = ListenPlan()
    split = len(inherited) - len(restart)
    if split < 0:
        raise ListenError(f"{RESTART_LISTENERS} describes more sockets than LISTEN_FDS passes")
    configured = {(addr, role.name): (addr, role) for addr, role in wanted}
    try:
        for item in inherited[:split]:
            role = _role_for(item, wanted, roles)
            plan.managed.append(((item.address, role), item.sock))
            log.info("inherited socket %s serves %s", item.describe(), role.name)
        for item, (role_name, addr) in zip(inherited[split:], restart, strict=True):
            if (addr, role_name) in configured and (addr, role_name) not in plan.bound:
                plan.bound[(addr, role_name)] = item.sock
            else:
                plan.closed.append(f"{addr} ({role_name})")
                log.info("restart: %s is no longer configured: not listening there", addr)
                item.sock.close()
    except BaseException:
        for item in inherited:
            item.sock.close()
        raise
    return plan
