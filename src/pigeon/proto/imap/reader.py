"""Literal-aware IMAP command reader (RFC 9051 §2.2, §4.3, §7.5; RFC 7888; RFC 2177).

The driver hands over the octets it reads (`receive`) and asks for one event
at a time (`next_event`), acting on each before asking for the next, so a
mode change (IDLE, AUTHENTICATE, ENABLE UTF8=ACCEPT) applies to the very
next line even when the client pipelined it. `feed(data)` is the same as
`receive(data)` followed by every event up to the first that needs an
answer before more input may be read.

Events:
    Command(...)     a complete, parsed command (grammar.Command)
    Continue(text)   the line ended in a synchronizing literal {n}: send
                     "+ text" (RFC 9051 §7.5); the literal follows
    Bad(tag, text)   the command breaks the grammar: answer "tag BAD text"
                     ("*" when no valid tag was read)
    TooBig(tag, status, close)
                     a literal over `max_literal`, or a command over
                     `max_command`: answer "tag <status> [TOOBIG] ..." (RFC
                     4469 §4.4 TOOBIG, RFC 9051 §7.1). A synchronizing
                     literal gets NO and no "+": the client sends no octet of
                     it and the connection carries on. A non-synchronizing
                     one ({n+}, RFC 7888 §4) is already on its way: BAD, and
                     `close` is True: the driver sends BYE and closes instead
                     of reading and discarding it (RFC 7888 §4 lets the
                     server close) -- nothing of it is buffered.
    LineTooLong(tag) a command line longer than `max_line`: it is
                     discarded as it arrives up to its end; answer BAD (the
                     driver may close)
    IdleDone(ok)     after `expect_idle_done()`: the next line; ok when it
                     was "DONE" (RFC 2177 §3); otherwise the driver ends
                     the IDLE with BAD
    AuthResponse(data, cancelled)
                     after `expect_auth_response()`: the client's base64
                     response decoded, or cancelled ("*", RFC 9051 §6.2.2);
                     data None and not cancelled when it was not base64

Contract:
  * Memory stays bounded: a line is at most `max_line` octets (8 KiB: RFC
    9051 §4 leaves the limit to the server; RFC 7162 §4 asks for at least
    8192), the lines of one command together at most `max_command`, one
    literal at most `max_literal`, and at most `max_literals` literals per
    command. While waiting for a literal, at most its announced size is kept.
  * Only a message is big: a literal may reach `max_literal` only in an
    APPEND of a logged-in session (`authenticated`, set by the driver after
    login); every other literal (a password, a search string, an APPEND
    before login) counts against `max_command`, so a client that has not
    logged in can never make the server hold more than 64 KiB.
  * A literal shorter than announced makes the reader wait (the driver's
    time-out ends it); one longer than announced leaves the extra octets as
    the rest of the command line, which the grammar then judges: no crash.
  * Lines end with CRLF; a bare LF is accepted too (lenient, as common
    servers are); a NUL in a command line is a BAD (RFC 9051 §4.1: no NUL
    outside literal8).
  * `discard_input()` throws away what was received but not read: after
    STARTTLS, nothing sent before the TLS handshake may be read as a command
    (RFC 9051 §6.2.1).
  * Nothing here raises for any input: every problem is an event.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from pigeon.proto.imap.commands import Command
from pigeon.proto.imap.grammar import parse_command, read_tag, takes_literal
from pigeon.proto.imap.lexer import Literal, ParseError, RawCommand

MAX_LINE = 8192
MAX_COMMAND = 64 * 1024
MAX_LITERALS = 100
# RFC 9051 §9: literal = "{" number64 ["+"] "}" CRLF; literal8 = "~{" ...
_LITERAL_MARKER = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}\Z")


@dataclass(frozen=True, slots=True)
class Continue:
    text: str = "Ready for literal data"


@dataclass(frozen=True, slots=True)
class Bad:
    tag: str
    text: str


@dataclass(frozen=True, slots=True)
class TooBig:
    tag: str
    status: str  # "NO" (synchronizing literal) or "BAD"
    close: bool


@dataclass(frozen=True, slots=True)
class LineTooLong:
    tag: str


@dataclass(frozen=True, slots=True)
class IdleDone:
    ok: bool


@dataclass(frozen=True, slots=True)
class AuthResponse:
    data: bytes | None
    cancelled: bool = False


ReaderEvent = Command | Continue | Bad | TooBig | LineTooLong | IdleDone | AuthResponse

_COMMAND, _IDLE, _AUTH = 0, 1, 2
#: feed() stops after these: the driver changes the reader's mode (IDLE,
#: AUTHENTICATE), discards input (STARTTLS) or how names are read (ENABLE).
_PAUSE_AFTER = frozenset({"IDLE", "AUTHENTICATE", "STARTTLS", "ENABLE"})


class CommandReader:
    """Turns received octets into events; see the module docstring."""

    __slots__ = (
        "max_line",
        "max_literal",
        "max_command",
        "max_literals",
        "utf8",
        "authenticated",
        "_buf",
        "_segments",
        "_literals",
        "_size",
        "_pending",
        "_skipping",
        "_skip_tag",
        "_mode",
    )

    def __init__(
        self,
        max_literal: int,
        max_line: int = MAX_LINE,
        max_command: int = MAX_COMMAND,
        max_literals: int = MAX_LITERALS,
    ) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_command = max_command
        self.max_literals = max_literals
        #: Mailbox names in UTF-8 (IMAP4rev2 / UTF8=ACCEPT enabled) rather than mUTF-7.
        self.utf8 = False
        #: Logged in: APPEND literals may reach max_literal (else max_command).
        self.authenticated = False
        self._buf = bytearray()
        self._segments: list[bytes] = []
        self._literals: list[Literal] = []
        self._size = 0
        self._pending: tuple[int, bool] | None = None  # (octets, literal8)
        self._skipping = False
        self._skip_tag = "*"
        self._mode = _COMMAND

    # -- driver interface --------------------------------------------------
    def receive(self, data: bytes) -> None:
        self._buf += data

    def feed(self, data: bytes) -> list[ReaderEvent]:
        self.receive(data)
        out: list[ReaderEvent] = []
        while (event := self.next_event()) is not None:
            out.append(event)
            if isinstance(event, Command) and event.name in _PAUSE_AFTER:
                break
            if isinstance(event, TooBig) and event.close:
                break
        return out

    def expect_idle_done(self) -> None:
        self._mode = _IDLE

    def expect_auth_response(self) -> None:
        self._mode = _AUTH

    def discard_input(self) -> int:
        n = len(self._buf)
        self._buf.clear()
        return n

    @property
    def buffered(self) -> int:
        """Octets received and not yet read (the driver pauses reading past a bound)."""
        return len(self._buf)

    @property
    def in_command(self) -> bool:
        """True while part of a command (a line before a literal) has been read."""
        return bool(self._segments) or self._pending is not None

    # -- reading -----------------------------------------------------------
    def next_event(self) -> ReaderEvent | None:
        while True:
            if self._pending is not None:
                if not self._take_literal():
                    return None
                continue
            if self._skipping:
                lf = self._buf.find(b"\n")
                if lf == -1:
                    self._buf.clear()
                    return None
                del self._buf[: lf + 1]
                self._skipping = False
                return LineTooLong(self._skip_tag)
            lf = self._buf.find(b"\n", 0, self.max_line)
            if lf == -1:
                if len(self._buf) >= self.max_line:
                    self._start_skipping()
                    continue
                return None
            line = bytes(self._buf[:lf])
            del self._buf[: lf + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            event = self._line(line)
            if event is not None:
                return event

    def _start_skipping(self) -> None:
        first = self._segments[0] if self._segments else bytes(self._buf[:200])
        self._skip_tag = read_tag(RawCommand((first,), ())) or "*"
        self._buf.clear()
        self._reset()
        self._skipping = True

    def _take_literal(self) -> bool:
        assert self._pending is not None
        size, binary = self._pending
        if len(self._buf) < size:
            return False
        self._literals.append(Literal(bytes(self._buf[:size]), binary))
        del self._buf[:size]
        self._pending = None
        return True

    def _line(self, line: bytes) -> ReaderEvent | None:
        if self._mode == _IDLE:
            self._mode = _COMMAND
            return IdleDone(line.strip().upper() == b"DONE")
        if self._mode == _AUTH:
            self._mode = _COMMAND
            return _auth_response(line)
        if not line and not self._segments:
            return None  # an empty line between commands: nothing to answer
        self._size += len(line)
        marker = _LITERAL_MARKER.search(line)
        if self._size > self.max_command:
            tag = self._tag(line)
            self._reset()
            # a {n+} literal would follow: its octets must not be read as commands
            return TooBig(tag, "BAD", close=marker is not None and bool(marker.group(3)))
        if marker is None:
            self._segments.append(line)
            return self._finish()
        binary, digits, nonsync = marker.groups()
        size = int(digits)
        segment = line[: marker.start()]
        tag = self._tag(segment)
        limit = self.max_literal if self._may_append(segment) else self.max_command - self._size
        if size > limit or len(self._literals) >= self.max_literals:
            self._reset()
            if nonsync:  # the octets are coming anyway: RFC 7888 §4
                return TooBig(tag, "BAD", close=True)
            return TooBig(tag, "NO", close=False)  # RFC 9051 §7.1 TOOBIG
        if not nonsync and (
            b"\x00" in segment
            or (
                not self._segments
                and (read_tag(RawCommand((segment,), ())) is None or not takes_literal(segment))
            )
        ):
            # no "+": the client drops the command (RFC 9051 §7.5). A {n+}
            # literal is on its way: it is read (bounded above) and the
            # grammar then answers BAD.
            self._reset()
            return Bad(tag, "Invalid command before literal")
        self._segments.append(segment)
        self._size += size if not self._may_append(segment) else 0
        self._pending = (size, bool(binary))
        if nonsync:
            return None
        return Continue()

    def _may_append(self, segment: bytes) -> bool:
        """A logged-in session's APPEND (the only command carrying a message)."""
        if not self.authenticated:
            return False
        first = self._segments[0] if self._segments else segment
        words = first.split(b" ", 2)
        return len(words) >= 2 and words[1].upper() == b"APPEND"

    def _tag(self, line: bytes) -> str:
        first = self._segments[0] if self._segments else line
        return read_tag(RawCommand((first,), ())) or "*"

    def _finish(self) -> ReaderEvent:
        raw = RawCommand(tuple(self._segments), tuple(self._literals))
        self._reset()
        if any(b"\x00" in s for s in raw.segments):
            return Bad(read_tag(raw) or "*", "NUL in command line")
        try:
            return parse_command(raw, self.utf8)
        except ParseError as exc:
            return Bad(read_tag(raw) or "*", str(exc)[:200])
        except RecursionError:  # belt and braces: every nesting is bounded
            return Bad(read_tag(raw) or "*", "command nested too deeply")

    def _reset(self) -> None:
        self._segments = []
        self._literals = []
        self._size = 0
        self._pending = None


def _auth_response(line: bytes) -> AuthResponse:
    if line.strip() == b"*":
        return AuthResponse(None, cancelled=True)
    try:
        return AuthResponse(base64.b64decode(line.strip(), validate=True))
    except binascii.Error:
        return AuthResponse(None)
