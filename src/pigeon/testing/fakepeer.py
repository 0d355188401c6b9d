"""FakePeer: a small scripted SMTP/LMTP server on 127.0.0.1 (or a Unix socket) for fault tests.

    def rules(cmd: Command, conn: PeerConnection):
        if cmd.verb == "RCPT" and "bad@" in cmd.arg:
            return "550 5.1.1 no such user"
        if cmd.verb == "MAIL" and conn.peer.mail_count == 1:
            return "451 4.3.0 try again"
        return None                                  # the default behaviour

    async with FakePeer(rules) as peer:              # peer.port, peer.messages
        ...

Contract (CONTRIBUTING.md, rule 14, a fake peer driven by a function):
  * The handler is called for every command line (`Command(verb, arg, line)`,
    verb upper-cased) and once more at the end of the content, as verb
    "DATA-END" (SMTP: once, arg ""; LMTP: once per accepted recipient, arg =
    the recipient, RFC 2033 §4.2). It returns a reply ("250 ok", multi-line
    with "\\r\\n" between lines, CRLF added), None for the default reply, or
    one of the actions: CLOSE (drop the connection now), HANG (stop
    answering; read and ignore everything), CLOSE_IN_DATA (for DATA: send
    354, read the first piece of content, then drop the connection).
  * Default behaviour: a plain RFC 5321 server that accepts everything:
    EHLO/LHLO lists `extensions`, HELO, MAIL, RCPT, DATA (dot-unstuffing),
    BDAT (RFC 3030), RSET, NOOP, QUIT; STARTTLS is refused (454): the fake
    has no certificate.
  * Every accepted message lands in `messages` (sender, recipients, the
    unstuffed content, the MAIL and RCPT lines as sent) and every line the
    client sent in `transcript`, so tests assert on what went over the wire.
  * Only for tests: no limits beyond what a test needs, no TLS, loopback only.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from pigeon.testing.live import free_port

DEFAULT_EXTENSIONS = (
    "PIPELINING",
    "SIZE 10240000",
    "8BITMIME",
    "SMTPUTF8",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "CHUNKING",
)


class Action(enum.Enum):
    CLOSE = "close"
    HANG = "hang"
    CLOSE_IN_DATA = "close-in-data"


CLOSE, HANG, CLOSE_IN_DATA = Action.CLOSE, Action.HANG, Action.CLOSE_IN_DATA


@dataclass(frozen=True, slots=True)
class Command:
    verb: str
    arg: str
    line: str


@dataclass
class ReceivedMessage:
    sender: str
    recipients: list[str]
    content: bytes
    mail_line: str
    rcpt_lines: list[str]


@dataclass
class PeerConnection:
    peer: FakePeer
    index: int
    sender: str | None = None
    mail_line: str = ""
    recipients: list[str] = field(default_factory=list)
    rcpt_lines: list[str] = field(default_factory=list)
    bdat: bytearray = field(default_factory=bytearray)


Handler = Callable[[Command, PeerConnection], "str | Action | None"]


def _addr(arg: str) -> str:
    start, end = arg.find("<"), arg.find(">")
    return arg[start + 1 : end] if 0 <= start < end else arg.split(":", 1)[-1].strip()


class _Closed(Exception):
    pass


class FakePeer:
    def __init__(
        self,
        handler: Handler | None = None,
        *,
        lmtp: bool = False,
        extensions: tuple[str, ...] = DEFAULT_EXTENSIONS,
        name: str = "fake.test",
        greeting: str | None = None,
        unix_path: str | None = None,
    ) -> None:
        self.handler = handler or (lambda cmd, conn: None)
        self.lmtp = lmtp
        self.extensions = extensions
        self.name = name
        self.greeting = greeting or f"220 {name} {'LMTP' if lmtp else 'ESMTP'} fakepeer"
        self.unix_path = unix_path
        self.port = 0
        self.messages: list[ReceivedMessage] = []
        self.transcript: list[str] = []
        self.connections = 0
        self.mail_count = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> FakePeer:
        if self.unix_path:
            self._server = await asyncio.start_unix_server(self._serve, self.unix_path)
        else:
            self.port = free_port()
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakePeer:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # --- one connection -------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        conn = PeerConnection(self, self.connections)
        try:
            writer.write(self.greeting.encode() + b"\r\n")
            await writer.drain()
            while True:
                raw = await reader.readline()
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self.transcript.append(line)
                verb, _, arg = line.partition(" ")
                await self._command(Command(verb.upper(), arg, line), conn, reader, writer)
        except (_Closed, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _say(self, writer: asyncio.StreamWriter, text: str) -> None:
        writer.write(text.encode() + b"\r\n")
        await writer.drain()

    async def _act(self, result, writer, reader, default: str) -> str | None:
        """Apply a handler result; returns the reply text that was sent (None if acted)."""
        if result is CLOSE:
            raise _Closed()
        if result is HANG:
            while await reader.read(65536):
                pass
            raise _Closed()
        text = default if result is None else result
        await self._say(writer, text)
        return text

    async def _command(self, cmd: Command, conn: PeerConnection, reader, writer) -> None:
        if cmd.verb == "MAIL":
            self.mail_count += 1
        result = self.handler(cmd, conn)
        verb = cmd.verb
        if verb in ("EHLO", "LHLO"):
            lines = [self.name, *self.extensions]
            default = "\r\n".join(
                f"250{' ' if i == len(lines) - 1 else '-'}{x}" for i, x in enumerate(lines)
            )
            await self._act(result, writer, reader, default)
        elif verb == "MAIL":
            sent = await self._act(result, writer, reader, "250 2.1.0 Ok")
            if sent and sent.startswith("2"):
                conn.sender, conn.mail_line = _addr(cmd.arg), cmd.line
                conn.recipients, conn.rcpt_lines = [], []
        elif verb == "RCPT":
            sent = await self._act(result, writer, reader, "250 2.1.5 Ok")
            if sent and sent.startswith("2"):
                conn.recipients.append(_addr(cmd.arg))
                conn.rcpt_lines.append(cmd.line)
        elif verb == "DATA":
            await self._data(cmd, result, conn, reader, writer)
        elif verb == "BDAT":
            await self._bdat(cmd, result, conn, reader, writer)
        elif verb == "RSET":
            conn.sender, conn.recipients = None, []
            await self._act(result, writer, reader, "250 2.0.0 Ok")
        elif verb == "QUIT":
            await self._act(result, writer, reader, "221 2.0.0 Bye")
            raise _Closed()
        elif verb == "STARTTLS":
            await self._act(result, writer, reader, "454 4.7.0 TLS not available")
        else:
            default = (
                "250 Ok" if verb in ("HELO", "NOOP") else "502 5.5.1 Error: command not implemented"
            )
            await self._act(result, writer, reader, default)

    async def _data(self, cmd, result, conn, reader, writer) -> None:
        if conn.sender is None or not conn.recipients:
            await self._act(result, writer, reader, "554 5.5.1 Error: no valid recipients")
            return
        if result is CLOSE_IN_DATA:
            await self._say(writer, "354 go ahead")
            await reader.read(1)
            raise _Closed()
        sent = await self._act(result, writer, reader, "354 End data with <CR><LF>.<CR><LF>")
        if not sent or not sent.startswith("354"):
            return
        content = bytearray()
        while True:
            line = await reader.readline()
            if not line:
                raise _Closed()
            if line == b".\r\n":
                break
            content += line[1:] if line.startswith(b".") else line
        await self._end(bytes(content), conn, writer, reader)

    async def _bdat(self, cmd, result, conn, reader, writer) -> None:
        parts = cmd.arg.split()
        size, last = int(parts[0]), len(parts) > 1 and parts[1].upper() == "LAST"
        chunk = await reader.readexactly(size)
        conn.bdat += chunk
        if not last:
            await self._act(result, writer, reader, f"250 2.0.0 {size} octets received")
            return
        content, conn.bdat = bytes(conn.bdat), bytearray()
        await self._end(content, conn, writer, reader)

    async def _end(self, content: bytes, conn, writer, reader) -> None:
        targets = conn.recipients if self.lmtp else [""]
        accepted = False
        for rcpt in targets:
            r = self.handler(Command("DATA-END", rcpt, ""), conn)
            sent = await self._act(r, writer, reader, "250 2.0.0 Ok: queued as FAKE")
            accepted |= bool(sent and sent.startswith("2"))
        if accepted:
            self.messages.append(
                ReceivedMessage(
                    conn.sender or "",
                    list(conn.recipients),
                    content,
                    conn.mail_line,
                    list(conn.rcpt_lines),
                )
            )
        conn.sender, conn.recipients = None, []
