"""pigeon.net.listener is generic: a toy line protocol (a stand-in for POP3 or IMAP)
served on loopback through the same listeners, limits and drain as SMTP.

No SMTP here on purpose: if the listener layer knew a thing about SMTP, these
tests could not be written against it.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from pigeon.config.schema import ListenAddress
from pigeon.net.listener import (
    ConnectionLimits,
    ListenerRole,
    ListenError,
    Listeners,
    Refusal,
    bind_failure,
    bind_sockets,
)
from pigeon.net.stream import SmtpStream

TOY = ListenerRole("toy", "toy_listen", "--toy-listen")
TOYS = ListenerRole("toys", "toys_listen", "--toys-listen")
LOOPBACK = ListenAddress("127.0.0.1", 0)


class ToySession:
    """Greets "+OK", echoes lines back, says "-ERR closing" when asked to finish and
    "-ERR grace is over" when cut off."""

    def __init__(self, stream: SmtpStream, role: ListenerRole) -> None:
        self.stream, self.role = stream, role
        self.stopping = False
        self.cut = False
        self.stubborn = False  # ignores shutdown(): only the end of the grace ends it
        self.deaf = False  # ignores cut_off() too: only cancelling it ends it

    async def run(self) -> None:
        self.stream.write(f"+OK {self.role.name} ready\r\n".encode())
        try:
            while True:
                data = await self.stream.read(10.0)
                if self.cut and not self.deaf:
                    self.stream.write(b"-ERR grace is over\r\n")
                    break
                if self.stopping and not self.stubborn:
                    self.stream.write(b"-ERR closing\r\n")
                    break
                if data is None and self.stopping:
                    continue  # stubborn or deaf: the wake-up is ignored
                if not data:  # EOF, or 10 s of silence (the test's bound)
                    break
                self.stream.write(b"echo " + data)
        finally:
            await self.stream.close_and_wait(5.0)

    def shutdown(self) -> None:
        self.stopping = True
        self.stream.wake()

    def cut_off(self) -> None:
        self.cut = True
        self.stream.wake()


class ToyService:
    def __init__(self) -> None:
        self.sessions: list[ToySession] = []
        self.refusals: list[tuple[str, Refusal]] = []

    def session(self, stream: SmtpStream, role: ListenerRole, peer: tuple[str, int]) -> ToySession:
        s = ToySession(stream, role)
        self.sessions.append(s)
        return s

    async def refuse(
        self, stream: SmtpStream, role: ListenerRole, refusal: Refusal, peer: tuple[str, int]
    ) -> None:
        self.refusals.append((role.name, refusal))
        stream.write(f"-ERR {refusal.value}\r\n".encode())
        await stream.close_and_wait(5.0)


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Client:
        return cls(*await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10))

    async def line(self) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), 10)

    async def say(self, text: bytes) -> bytes:
        self.writer.write(text)
        return await self.line()

    def close(self) -> None:
        self.writer.close()


def port_of(listeners: Listeners, role: str = "toy") -> int:
    return next(p for _, p, r in listeners.bound_roles() if r == role)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_a_non_smtp_role_is_served_through_the_factory():
    async def scenario():
        service = ToyService()
        listeners = Listeners(service, [(LOOPBACK, TOY), (LOOPBACK, TOYS)])
        await listeners.start()
        try:
            assert sorted(r for _, _, r in listeners.bound_roles()) == ["toy", "toys"]
            for role in ("toy", "toys"):
                c = await Client.open(port_of(listeners, role))
                assert await c.line() == f"+OK {role} ready\r\n".encode()
                assert await c.say(b"hello\r\n") == b"echo hello\r\n"
                c.close()
            assert [s.role.name for s in service.sessions] == ["toy", "toys"]
            assert listeners.statistics()["connections_total"] == 2
        finally:
            await listeners.close()

    run(scenario())


def test_a_group_of_roles_counts_apart_under_its_own_limits():
    """The mail readers' roles (ListenerRole.group) neither take the others'
    slots nor are refused for them: each count has its own limits."""
    grouped = ListenerRole("grouped", "g_listen", "--g-listen", group="readers")

    async def scenario():
        service = ToyService()
        limits = ConnectionLimits(total=0, per_ip=1, groups={"readers": ConnectionLimits(0, 2)})
        listeners = Listeners(service, [(LOOPBACK, TOY), (LOOPBACK, grouped)], limits=limits)
        await listeners.start()
        try:
            toy = await Client.open(port_of(listeners, "toy"))
            assert (await toy.line()).startswith(b"+OK")
            kept = []
            for _ in range(2):  # the toy's one slot from this address does not count here
                kept.append(await Client.open(port_of(listeners, "grouped")))
                assert (await kept[-1].line()).startswith(b"+OK grouped")
            third = await Client.open(port_of(listeners, "grouped"))
            assert await third.line() == b"-ERR too many connections from this address\r\n"
            other = await Client.open(port_of(listeners, "toy"))
            assert await other.line() == b"-ERR too many connections from this address\r\n"
            assert service.refusals == [
                ("grouped", Refusal.TOO_MANY_FROM_IP),
                ("toy", Refusal.TOO_MANY_FROM_IP),
            ]
            for c in (toy, *kept):
                c.close()
        finally:
            await listeners.close()

    run(scenario())


def test_limits_refuse_through_the_service_in_its_own_words():
    async def scenario():
        service = ToyService()
        listeners = Listeners(
            service, [(LOOPBACK, TOY)], limits=ConnectionLimits(total=0, per_ip=1)
        )
        await listeners.start()
        try:
            port = port_of(listeners)
            first = await Client.open(port)
            assert (await first.line()).startswith(b"+OK")
            second = await Client.open(port)
            assert await second.line() == b"-ERR too many connections from this address\r\n"
            assert await second.reader.read() == b""  # and closed
            assert service.refusals == [("toy", Refusal.TOO_MANY_FROM_IP)]
            # A reload raises the limit: the next newcomer is served.
            await listeners.reconfigure([(LOOPBACK, TOY)], ConnectionLimits(total=1, per_ip=0))
            port = port_of(listeners)  # still the same listener: not rebound
            third = await Client.open(port)
            assert await third.line() == b"-ERR too many connections\r\n"
            first.close()
            assert listeners.statistics()["connections_refused"] == 2
        finally:
            await listeners.close()

    run(scenario())


def test_drain_stops_accepting_asks_sessions_to_finish_and_cuts_off_the_rest():
    async def scenario():
        service = ToyService()
        listeners = Listeners(service, [(LOOPBACK, TOY)])
        await listeners.start()
        port = port_of(listeners)
        polite, stubborn, deaf = [await Client.open(port) for _ in range(3)]
        await polite.line(), await stubborn.line(), await deaf.line()
        service.sessions[1].stubborn = True
        service.sessions[2].stubborn = service.sessions[2].deaf = True
        drain = asyncio.ensure_future(listeners.drain(grace=0.5))
        assert await polite.line() == b"-ERR closing\r\n"  # asked to finish, it did
        with pytest.raises(OSError):
            await Client.open(port)  # the listening socket closed at once
        assert listeners.bound_roles() == []
        await asyncio.wait_for(drain, 20)
        # At the end of the grace: told so in the protocol's words, then closed.
        assert await asyncio.wait_for(stubborn.reader.read(), 10) == b"-ERR grace is over\r\n"
        # One that does not even listen to that is cancelled: closed all the same.
        assert await asyncio.wait_for(deaf.reader.read(), 10) == b""
        for client in (polite, stubborn, deaf):
            client.close()

    run(scenario())


def test_reconfigure_adds_and_removes_listeners_and_reports_what_it_cannot_bind():
    async def scenario():
        service = ToyService()
        listeners = Listeners(service, [(LOOPBACK, TOY)])
        await listeners.start()
        old_port = port_of(listeners)
        taken = socket.create_server(("127.0.0.1", 0))
        busy = ListenAddress("127.0.0.1", taken.getsockname()[1])
        try:
            warnings = await listeners.reconfigure(
                [(LOOPBACK, TOYS), (busy, TOY)], ConnectionLimits()
            )
            assert warnings == [
                f"cannot listen on {busy} (toy): Address already in use (set by toy_listen "
                'in the configuration or --toy-listen; toy_listen = [] or --toy-listen "" '
                "turns the role off)"
            ]
            assert [r for _, _, r in listeners.bound_roles()] == ["toys"]
            with pytest.raises(OSError):
                await Client.open(old_port)  # the removed listener is closed
            c = await Client.open(port_of(listeners, "toys"))
            assert await c.line() == b"+OK toys ready\r\n"
            c.close()
        finally:
            taken.close()
            await listeners.close()

    run(scenario())


def test_start_fails_as_a_whole_naming_the_key_and_the_flag():
    async def scenario():
        taken = socket.create_server(("127.0.0.1", 0))
        busy = ListenAddress("127.0.0.1", taken.getsockname()[1])
        listeners = Listeners(ToyService(), [(LOOPBACK, TOYS), (busy, TOY)])
        try:
            with pytest.raises(ListenError) as info:
                await listeners.start()
        finally:
            taken.close()
        assert str(info.value).startswith(f"cannot listen on {busy} (toy): Address already in use")
        assert listeners.bound_roles() == []  # what was bound is closed again

    run(scenario())


def test_sockets_bound_before_a_fork_are_served():
    sockets = bind_sockets([(LOOPBACK, TOY)])
    ((addr, role_name),) = sockets

    async def scenario():
        listeners = Listeners(ToyService(), [(addr, TOY)])
        await listeners.start(sockets)
        try:
            port = sockets[(addr, role_name)].getsockname()[1]
            assert port_of(listeners) == port
            c = await Client.open(port)
            assert await c.line() == b"+OK toy ready\r\n"
            c.close()
        finally:
            await listeners.close()

    try:
        run(scenario())
    finally:
        for s in sockets.values():
            s.close()


def test_bind_failure_of_a_role_that_cannot_be_turned_off():
    always = ListenerRole("smtp", "listen", "--listen", optional=False)
    text = bind_failure(ListenAddress("::1", 25), always, OSError(98, "in use"))
    assert text == (
        "cannot listen on [::1]:25 (smtp): Address already in use "
        "(set by listen in the configuration or --listen)"
    )
