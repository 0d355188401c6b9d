"""The server's end of the checker process: the inbound checks run on another core.

Why: the checks of a small message (SPF, DKIM, DMARC) cost about as much CPU
as everything else the server does to receive it, and the server receives
on one event loop, one core. In a process of their own (app/checker.py)
they use another core while the event loop goes on with other sessions; the
server's share is one write and one read on a socket pair (docs/benchmarks.md,
"Issue 13").

Contract:
  * `RemoteChecks(channel, respawn=...)`: `channel` is the server's end of a
    connected stream socket pair whose other end is served by the checker
    process (or None when it could not be started); `respawn()` starts a
    new one and returns its socket, or None (app/checker.py logs why);
    `close()` ends the channel and calls `reap()` (the processes end when
    their input ends). `answered` counts the messages the process examined;
    `await wait_ready(timeout)` returns whether a process said it is ready
    within `timeout` seconds (for tests and start-up; examine never waits).
  * `configure(config)` gives the process the configuration its checks run
    under (the `Config`), now and again after every reload; a new process
    is configured before its first check.
  * `await examine(session, message, headers, policies, fallback=examiner)`
    returns the `Examined` of the message as the checker process made it.
    Whenever the process cannot answer (it is not running, it died, it
    reported an error, or it did not answer within `timeout` seconds) the
    message is examined by `fallback` in the server instead, the same rules
    in the same order, and the trouble is logged once per episode: a
    message is never accepted unchecked because of the process. Until a
    (new) process has said it is ready, having built its checks, messages
    are examined by `fallback` too: they do not wait for it to start. A process
    that failed is replaced by `respawn()` at most once every `retry_after`
    seconds; meanwhile the checks run inline.
  * Frames: a 4-octet big-endian length, then a pickle. Server to process:
    ("config", Config) and ("check", id, (client IP, HELO name, None or
    the sender's (local part, domain)), the four policies (spf, dkim,
    dmarc, arc), content). Process to server: ("ready",) once, then
    (id, encode(Examined)) or (id, None, error text).
    What comes back is plain values (`encode`: tuples, strings, numbers)
    unpickled by `_Unpickler`, which refuses every class and function, and
    rebuilt by `decode` through the constructors that check them (a header
    field that could split the header is refused): a checker process taken
    over by a hostile message cannot make the server run code or write
    outside its one header field.
  * Single-threaded: everything here runs on the server's event loop.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import pickle
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

from pigeon.config.mailauth import CheckPolicies
from pigeon.config.schema import Config
from pigeon.policy.api import HeaderField, Message, SessionFacts, Verdict
from pigeon.policy.mailauth.examine import Examined, Examiner
from pigeon.policy.mailauth.findings import message_content
from pigeon.proto.reply import Reply
from pigeon.reports.records import DkimAuth, DmarcPublished, DmarcRecord, SpfAuth

__all__ = ["RemoteChecks", "decode", "encode", "frame", "read_frames"]

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
#: A frame larger than this is a broken peer (messages are bounded far below).
MAX_FRAME = 1 << 30


def frame(value: object) -> bytes:
    """One frame: length, then the pickle of `value`."""
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def read_frames(buffer: bytearray) -> list[bytes]:
    """Take every complete frame's payload out of `buffer` (ValueError: a
    length over MAX_FRAME)."""
    out: list[bytes] = []
    start = 0
    while len(buffer) - start >= 4:
        (size,) = _LENGTH.unpack_from(buffer, start)
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} octets")
        if len(buffer) - start - 4 < size:
            break
        out.append(bytes(buffer[start + 4 : start + 4 + size]))
        start += 4 + size
    del buffer[:start]
    return out


class _Unpickler(pickle.Unpickler):
    """Plain values only: no class, no function (module contract)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name}: the checker sends plain values only")


def _answer(payload: bytes) -> Any:
    return _Unpickler(io.BytesIO(payload)).load()


def encode(examined: Examined) -> tuple[Any, ...]:
    """`examined` as plain values: what the examiner sets of a verdict (its
    reply, header fields and transport) and the DMARC record."""
    verdict, r = examined.verdict, examined.record
    reply = verdict.reply
    record = None
    if r is not None:
        p = r.published
        record = (
            r.when,
            r.source_ip,
            r.header_from,
            r.envelope_from,
            (p.domain, p.adkim, p.aspf, p.p, p.sp, p.pct),
            r.disposition,
            r.dkim_aligned,
            r.spf_aligned,
            tuple((d.domain, d.selector, d.result) for d in r.dkim),
            tuple((s.domain, s.scope, s.result) for s in r.spf),
            r.reason,
        )
    return (
        None if reply is None else (reply.code, reply.enhanced, reply.lines),
        tuple((h.name, h.value) for h in verdict.headers),
        verdict.transport,
        record,
    )


def decode(value: Any) -> Examined:
    """The `Examined` of `encode`'s values, each part checked by its own
    constructor (a header field that could split the header section is
    refused: ValueError); TypeError or ValueError for anything else."""
    reply, headers, transport, record = value
    verdict = Verdict(
        None if reply is None else Reply(int(reply[0]), reply[1], tuple(reply[2])),
        headers=tuple(HeaderField(str(n), str(v)) for n, v in headers),
        transport=None if transport is None else str(transport),
    )
    if record is None:
        return Examined(verdict)
    when, ip, hfrom, efrom, pub, disposition, dkim_ok, spf_ok, dkim, spf, reason = record
    return Examined(
        verdict,
        DmarcRecord(
            when,
            ip,
            hfrom,
            efrom,
            DmarcPublished(*pub),
            disposition,
            dkim_ok,
            spf_ok,
            tuple(DkimAuth(*d) for d in dkim),
            tuple(SpfAuth(*a) for a in spf),
            reason,
        ),
    )


class CheckerTrouble(Exception):
    """The checker process could not answer (module contract)."""


class Coalescer:
    """Frames written once per turn of the event loop: under load several
    requests (or answers) leave in one write, one wake-up of the other side."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._out: list[bytes] = []

    def send(self, value: object) -> None:
        if not self._out:
            asyncio.get_running_loop().call_soon(self.flush)
        self._out.append(frame(value))

    def flush(self) -> None:
        out, self._out = self._out, []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))


class _Channel(asyncio.Protocol):
    """One connection to one checker process: frames out, answers matched to requests."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.out = Coalescer()
        self.buffer = bytearray()
        #: id -> (its future, when it was sent: the loop's clock)
        self.pending: dict[int, tuple[asyncio.Future[Examined], float]] = {}
        self.watchdog: asyncio.TimerHandle | None = None
        self.lost = False
        self.ready = asyncio.Event()  # the process said it has built its checks
        self.closing = False  # we closed it: its end is no news

    @property
    def transport(self) -> asyncio.Transport | None:
        return self.out.transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.out.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            for payload in read_frames(self.buffer):
                self._answered(_answer(payload))
        except (ValueError, pickle.UnpicklingError, EOFError, TypeError) as exc:
            self.fail(f"unreadable answer: {exc}")

    def _answered(self, answer: Any) -> None:
        if answer == ("ready",):
            self.ready.set()
            return
        entry = self.pending.pop(answer[0], None)
        if entry is None or entry[0].done():
            return  # not ours, or given up on: the message was examined inline
        future = entry[0]
        if len(answer) == 2:
            try:
                future.set_result(decode(answer[1]))
            except (TypeError, ValueError) as exc:
                future.set_exception(CheckerTrouble(f"a malformed answer: {exc}"))
        else:
            future.set_exception(CheckerTrouble(str(answer[2] if len(answer) > 2 else answer)))

    def connection_lost(self, exc: Exception | None) -> None:
        if not (self.lost or self.closing):
            log.warning("the checker process ended; a new one checks the next message")
        self.lost = True
        self._fail_all(CheckerTrouble("the checker process ended"))

    def fail(self, why: str) -> None:
        self.lost = True
        self._fail_all(CheckerTrouble(why))
        if self.transport is not None:
            self.transport.abort()

    def _fail_all(self, exc: CheckerTrouble) -> None:
        pending, self.pending = self.pending, {}
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(exc)
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None

    def request(self, ident: int, value: object) -> asyncio.Future[Examined]:
        """Send one check; its answer's future. One watchdog timer for all of
        them (not one timer per message): a process that leaves the oldest
        unanswered for `timeout` seconds is given up on, stuck somewhere."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Examined] = loop.create_future()
        self.pending[ident] = (future, loop.time())
        self.out.send(value)
        if self.watchdog is None:
            self.watchdog = loop.call_later(self.timeout / 4, self._watch)
        return future

    def _watch(self) -> None:
        self.watchdog = None
        if not self.pending:
            return
        loop = asyncio.get_running_loop()
        oldest = min(sent for _, sent in self.pending.values())
        if loop.time() - oldest >= self.timeout:
            self.fail(f"no answer within {self.timeout:g} s")
        else:
            self.watchdog = loop.call_later(self.timeout / 4, self._watch)


class RemoteChecks:
    """configure(), examine(), close(): see the module contract."""

    def __init__(
        self,
        channel: socket.socket | None,
        *,
        respawn: Callable[[], socket.socket | None],
        reap: Callable[[], None] = lambda: None,
        timeout: float = 60.0,
        retry_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._socket = channel
        self._respawn = respawn
        self._reap = reap
        self.timeout = timeout
        self.retry_after = retry_after
        self._clock = clock
        self._channel: _Channel | None = None
        self._config: Config | None = None
        self._ids = itertools.count(1)
        self._next_try = 0.0
        self._troubled = False  # one log line per episode
        self._connecting: asyncio.Future[_Channel | None] | None = None
        self._preparing: asyncio.Task[_Channel | None] | None = None
        self.answered = 0

    def configure(self, config: Config) -> None:
        self._config = config
        if self._channel is not None and not self._channel.lost:
            self._channel.out.send(("config", config))

    async def examine(
        self,
        session: SessionFacts,
        message: Message,
        headers: Sequence[tuple[str, str]],
        policies: CheckPolicies,
        *,
        fallback: Examiner,
    ) -> Examined:
        channel = self._channel
        if channel is None or channel.lost:
            channel = await self._connect()
        if channel is None or not channel.ready.is_set():
            return await fallback.examine(session, message, headers, policies)
        content = message_content(message)  # a StoreError goes to the pipeline, as inline
        sender = session.sender
        # Plain values: a pickled dataclass costs the event loop six times more.
        facts = (
            session.client_ip,
            session.helo,
            None if sender is None else (sender.local, sender.domain),
        )
        wanted = (policies.spf, policies.dkim, policies.dmarc, policies.arc)
        ident = next(self._ids)
        future = channel.request(ident, ("check", ident, facts, wanted, content))
        try:
            examined = await future
        except CheckerTrouble as exc:
            self._trouble(str(exc))
            return await fallback.examine(session, message, headers, policies)
        self.answered += 1
        if self._troubled:
            self._troubled = False
            log.info("the checker process answers again")
        return examined

    @property
    def in_flight(self) -> int | None:
        """Checks sent and not yet answered; None while no process is ready
        (its messages are checked inline: policy/mailauth/pool.py)."""
        channel = self._channel
        if channel is None or channel.lost or not channel.ready.is_set():
            return None
        return len(channel.pending)

    def prepare(self) -> None:
        """Start connecting (or starting a process) in the background when
        there is no channel and no attempt under way; the next examine
        finds it ready (a pool's members other than the one asked)."""
        channel = self._channel
        if (channel is None or channel.lost) and self._connecting is None:
            if self._socket is not None or self._clock() >= self._next_try:
                # Kept: the loop holds tasks weakly.
                self._preparing = asyncio.get_running_loop().create_task(self._connect())

    async def wait_ready(self, timeout: float) -> bool:
        channel = self._channel
        if channel is None or channel.lost:
            channel = await self._connect()
        if channel is None:
            return False
        try:
            await asyncio.wait_for(channel.ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _trouble(self, why: str) -> None:
        if not self._troubled:
            self._troubled = True
            log.warning("checker process: %s; checking in the server meanwhile", why)

    async def _connect(self) -> _Channel | None:
        if self._connecting is not None:
            return await self._connecting
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_future()
        try:
            channel = await self._open(loop)
        except Exception as exc:  # whatever it is, the checks run here meanwhile
            self._trouble(f"cannot connect: {exc}")
            channel = None
        self._connecting.set_result(channel)
        self._connecting = None
        return channel

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Channel | None:
        sock, self._socket = self._socket, None
        if sock is None:
            if self._clock() < self._next_try:
                return None
            self._next_try = self._clock() + self.retry_after
            sock = self._respawn()
            if sock is None:
                self._trouble("it could not be started")
                return None
        sock.setblocking(False)
        _, channel = await loop.create_unix_connection(lambda: _Channel(self.timeout), sock=sock)
        if self._config is not None:
            channel.out.send(("config", self._config))
        self._channel = channel
        return channel

    def close(self) -> None:
        """End the channel: the process ends when it reads the end of its input."""
        channel, self._channel = self._channel, None
        if channel is not None and channel.transport is not None:
            channel.closing = True
            channel.transport.close()
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._reap()
