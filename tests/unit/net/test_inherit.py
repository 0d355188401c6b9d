"""pigeon.net.inherit: the sd_listen_fds protocol read from the environment, and what
each inherited socket becomes (a role by name or by address; a restart's sockets
reused or closed). Real sockets on loopback, moved to a high descriptor range
(`first_fd`) so the test process's own descriptors 3, 4... stay untouched.

(With systemd-socket-activate and `pigeon restart`: tests/e2e/test_socket_activation.py.)
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket

import pytest

from pigeon.config.schema import ListenAddress
from pigeon.net.inherit import InheritedSocket, assign, listen_fds, restart_environment
from pigeon.net.listener import ListenerRole, ListenError, Listeners
from pigeon.net.smtp_service import SMTP, SMTP_ROLES, SUBMISSION, SUBMISSIONS

BASE = 700  # where the test puts "inherited" descriptors


@pytest.fixture
def passed():
    """Put sockets at BASE, BASE+1...; close whatever is left there afterwards."""
    used: list[int] = []

    def put(*socks: socket.socket) -> None:
        for i, sock in enumerate(socks):
            os.dup2(sock.fileno(), BASE + i)
            used.append(BASE + i)
            sock.close()

    yield put
    for fd in used:
        try:
            os.close(fd)
        except OSError:
            pass


def env(count: int, names: str | None = None, pid: int | None = None, **more: str) -> dict:
    out = {"LISTEN_FDS": str(count), "LISTEN_PID": str(pid or os.getpid()), **more}
    if names is not None:
        out["LISTEN_FDNAMES"] = names
    return out


def listening(host: str = "127.0.0.1") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, 0), family=family)


def test_the_protocol_is_read_once_and_the_variables_removed(passed):
    a, b = listening(), listening()
    ports = [a.getsockname()[1], b.getsockname()[1]]
    passed(a, b)
    environ = env(2, "smtp", PIGEON_RESTART_LISTENERS="[]", OTHER="kept")
    inherited, restart = listen_fds(environ, first_fd=BASE)
    assert environ == {"OTHER": "kept"}
    assert [(i.fd, i.name, i.address) for i in inherited] == [
        (BASE, "smtp", ListenAddress("127.0.0.1", ports[0])),
        (BASE + 1, "unknown", ListenAddress("127.0.0.1", ports[1])),  # systemd's default name
    ]
    assert restart == []
    for item in inherited:
        assert fcntl.fcntl(item.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert item.sock.getblocking() is False


def test_variables_meant_for_another_process_are_ignored_and_removed(passed):
    passed(listening())
    environ = env(1, "smtp", pid=os.getpid() + 1)
    assert listen_fds(environ, first_fd=BASE) == ([], [])
    assert environ == {}
    assert listen_fds({}, first_fd=BASE) == ([], [])


def test_a_descriptor_that_is_not_a_listening_tcp_socket_is_refused(passed):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    passed(udp)
    with pytest.raises(ListenError, match=f'descriptor {BASE} .name "x". is not a listening TCP'):
        listen_fds(env(1, "x"), first_fd=BASE)
    with pytest.raises(ListenError, match="LISTEN_FDS='two'"):
        listen_fds({"LISTEN_FDS": "two", "LISTEN_PID": str(os.getpid())}, first_fd=BASE)


def fake(name: str, host: str, port: int) -> InheritedSocket:
    sock = socket.socket()
    return InheritedSocket(-1, name, sock, ListenAddress(host, port))


WANTED = [
    (ListenAddress("0.0.0.0", 25), SMTP),
    (ListenAddress("::1", 587), SUBMISSION),
    (ListenAddress("192.0.2.1", 465), SUBMISSIONS),
]


@pytest.mark.parametrize(
    "name, host, port, role",
    [
        ("submissions", "127.0.0.1", 9999, SUBMISSIONS),  # the name wins
        ("pigeon.socket", "0.0.0.0", 25, SMTP),  # its address is configured for smtp
        ("unknown", "0:0:0:0:0:0:0:1", 587, SUBMISSION),  # the same IP, written otherwise
        ("unknown", "::", 465, SUBMISSIONS),  # a wildcard socket: the role of its port
    ],
)
def test_a_managed_socket_serves_the_role_of_its_name_or_address(name, host, port, role):
    item = fake(name, host, port)
    plan = assign([item], WANTED, SMTP_ROLES)
    assert plan.managed == [((item.address, role), item.sock)]
    assert plan.bound == {}
    item.sock.close()


@pytest.mark.parametrize(
    "host, port, why",
    [
        ("127.0.0.1", 2525, "no listener role is configured at that address"),
        ("::", 25, "two roles claim it"),
    ],
)
def test_a_managed_socket_no_role_claims_is_refused_with_the_way_out(host, port, why):
    wanted = [*WANTED, (ListenAddress("127.0.0.1", 25), SUBMISSION)]
    item = fake("unknown", host, port)
    with pytest.raises(ListenError) as refused:
        assign([item], wanted, SMTP_ROLES)
    assert why in str(refused.value)
    assert "FileDescriptorName=smtp|submission|submissions" in str(refused.value)
    assert "listen, submission_listen, submissions_listen" in str(refused.value)
    assert item.sock.fileno() == -1  # closed


def test_a_restarts_sockets_are_reused_where_still_configured_and_closed_elsewhere():
    managed = fake("smtp", "::", 25)
    kept = fake("submission", "::1", 587)
    dropped = fake("submissions", "192.0.2.9", 465)
    restart = [
        ("submission", ListenAddress("::1", 587)),
        ("submissions", ListenAddress("192.0.2.9", 465)),
    ]
    plan = assign([managed, kept, dropped], WANTED, SMTP_ROLES, restart=restart)
    assert plan.managed == [((managed.address, SMTP), managed.sock)]
    assert plan.bound == {(ListenAddress("::1", 587), "submission"): kept.sock}
    assert plan.closed == ["192.0.2.9:465 (submissions)"]
    assert dropped.sock.fileno() == -1
    managed.sock.close()
    kept.sock.close()


def test_restart_environment_describes_the_configured_listeners():
    described = restart_environment([(ListenAddress("localhost", 2525), SMTP)])
    assert described == '[["smtp", "localhost", 2525]]'


# --- the listeners with managed sockets --------------------------------------------------

TOY = ListenerRole("toy", "toy_listen", "--toy-listen")
TOYS = ListenerRole("toys", "toys_listen", "--toys-listen")


class Greeter:
    def session(self, stream, role, peer):
        class Session:
            async def run(self) -> None:
                stream.write(f"+OK {role.name}\r\n".encode())
                await stream.close_and_wait(5.0)

            def shutdown(self) -> None:
                pass

        return Session()

    async def refuse(self, stream, role, refusal, peer):
        await stream.close_and_wait(5.0)


def first_line(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        return s.makefile("rb").readline()


async def greeting(port: int) -> bytes:
    return await asyncio.to_thread(first_line, port)


def test_managed_sockets_replace_their_roles_addresses_now_and_at_every_reload():
    async def scenario() -> None:
        held = listening()
        address = ListenAddress("127.0.0.1", held.getsockname()[1])
        configured = ListenAddress("127.0.0.1", 0)
        listeners = Listeners(Greeter(), [(configured, TOY), (configured, TOYS)])
        await listeners.start(managed=[((address, TOY), held)])
        try:
            roles = sorted((r, p == address.port) for _, p, r in listeners.bound_roles())
            assert roles == [("toy", True), ("toys", False)]  # toy's own address not bound
            assert await greeting(address.port) == b"+OK toy\r\n"
            assert sorted((lst[1].name, managed) for lst, _, managed in listeners.serving()) == [
                ("toy", True),
                ("toys", False),
            ]
            # A reload that names other toy addresses keeps the managed socket, binds none.
            await listeners.reconfigure([(configured, TOY)], listeners._limits)
            assert [(r, p) for _, p, r in listeners.bound_roles()] == [("toy", address.port)]
            assert await greeting(address.port) == b"+OK toy\r\n"
            assert await listeners.settle(1.0) == 0
        finally:
            await listeners.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
