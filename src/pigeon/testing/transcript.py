r"""SMTP conversation transcripts (`tests/transcripts/*.smtp`): parser and in-memory runner.

A transcript is a plain-text script of one SMTP conversation, seen from the
client. The same file is meant to run against `ServerSession` in memory (this
module, `run_in_memory`) and against a live server on loopback (a separate
runner built on the same `parse_transcript`). The parser knows nothing about
either runner.

Format, one directive per line:

    # comment                  ignored, as are empty lines
    !config key=value          SessionConfig override; only before the first
                               C:/R:/S: line (ints, floats, true/false, strings)
    C: text                    client line; CRLF is appended
    R: escaped                 raw client bytes, Python escapes (\r \n \t \\
                               \x00 ...); nothing is appended
    R*N: escaped               the raw bytes repeated N times (e.g. 101
                               Received: header lines)
    S: text                    one reply line, compared exactly (without CRLF)
    S~ regex                   one reply line; the regex must fullmatch it
    !close                     the server must close the connection here
    !starttls                  the server must have said 220 to STARTTLS: run
                               the TLS handshake here (in memory: the session's
                               tls_started() with a fixed TlsInfo; live: a real
                               handshake, certificate not verified). Reply
                               lines still unread at this point are an error.
    !wait SECONDS              let time pass (in memory: advance the clock and
                               fire timers)
    !expect-content escaped    in-memory only: the content of the last message
                               accepted (DataFinished) equals these bytes
                               (live runners skip it)

Consecutive C:/R: lines form one write (so they are pipelined); S: lines
consume the server's output in order. After the last directive every reply
line must have been expected, and the connection must still be open unless
`!close` said otherwise. A transcript normally starts with the greeting
(`S~ 220 .*`).

In-memory decisions come from `DefaultPolicy`, a fixed fake mimicking the
default pigeon configuration: every MAIL is accepted; RCPT to domain
"localhost" or to <postmaster> is accepted, "unknown@known.example" gets
UNKNOWN_USER, anything else RELAY_DENIED; DATA/BDAT start is accepted;
every finished message is "queued" under a made-up ID (match it with
`S~ 250 2\.0\.0 Ok: queued as \S+`). AUTH: the one account is
"alice@localhost" with the password "secret" (owning that address); once
authenticated, RCPT to any domain is accepted (except the unknown user
above) and MAIL FROM must be <alice@localhost> or <> (553 5.7.1). SCRAM keys
are never found (SCRAM exchanges are tested in tests/unit/proto).
`!config auth_mechanisms=PLAIN,LOGIN` takes a comma-separated list.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from pigeon.proto import reply as R
from pigeon.proto.events import (
    NEED_DATA,
    AuthKeysRequested,
    AuthRequested,
    ConnectionClosing,
    DataAborted,
    DataFinished,
    DataReceived,
    DataStarted,
    EtrnRequested,
    Event,
    MailRequested,
    RcptRequested,
    StartTlsRequested,
    TlsInfo,
    TransactionReset,
)
from pigeon.proto.reply import Reply
from pigeon.proto.server import ServerSession, SessionConfig


class TranscriptError(ValueError):
    """A transcript file that does not follow the format (with its line number)."""


class TranscriptMismatch(AssertionError):
    """The server's behaviour differed from the transcript."""


@dataclass(frozen=True)
class Send:
    data: bytes
    lineno: int


@dataclass(frozen=True)
class Expect:
    text: str
    regex: bool
    lineno: int

    def matches(self, line: str) -> bool:
        return re.fullmatch(self.text, line) is not None if self.regex else line == self.text


@dataclass(frozen=True)
class ExpectClose:
    lineno: int


@dataclass(frozen=True)
class Wait:
    seconds: float
    lineno: int


@dataclass(frozen=True)
class ExpectContent:
    data: bytes
    lineno: int


@dataclass(frozen=True)
class StartTls:
    lineno: int


Step = Send | Expect | ExpectClose | Wait | ExpectContent | StartTls

#: The TLS parameters the in-memory runner reports for `!starttls`.
MEMORY_TLS = TlsInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256)
#: The account both runners know (see the module docstring).
TRANSCRIPT_USER = ("alice@localhost", "secret")


@dataclass
class Transcript:
    name: str
    config: dict[str, object] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)


def unescape(text: str) -> bytes:
    """Python-style escapes (\\r \\n \\x00 \\\\ ...) -> bytes; UTF-8 for the rest."""
    return codecs.escape_decode(text.encode("utf-8"))[0]


def _config_value(name: str, raw: str, lineno: int) -> object:
    fields = {f.name: f for f in dataclasses.fields(SessionConfig)}
    if name not in fields:
        raise TranscriptError(f"line {lineno}: unknown config key {name!r}")
    default = getattr(SessionConfig(), name)
    try:
        if isinstance(default, tuple):
            return tuple(v.strip().upper() for v in raw.split(",") if v.strip())
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false"):
                raise ValueError(raw)
            return raw.lower() == "true"
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise TranscriptError(f"line {lineno}: bad value for {name}: {raw!r}") from None
    return raw


def parse_transcript(text: str, name: str = "<transcript>") -> Transcript:
    """Parse the transcript format described in the module docstring."""
    t = Transcript(name)
    pending: list[bytes] = []
    pending_line = 0

    def flush() -> None:
        nonlocal pending
        if pending:
            t.steps.append(Send(b"".join(pending), pending_line))
            pending = []

    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("C: ") or line == "C:":
            if not pending:
                pending_line = lineno
            pending.append(line[3:].encode("utf-8") + b"\r\n")
            continue
        m = re.fullmatch(r"R(?:\*(\d+))?: (.*)", line)
        if m:
            if not pending:
                pending_line = lineno
            pending.append(unescape(m.group(2)) * int(m.group(1) or 1))
            continue
        flush()
        if line.startswith("S: "):
            t.steps.append(Expect(line[3:], False, lineno))
        elif line.startswith("S~ "):
            try:
                re.compile(line[3:])
            except re.error as exc:
                raise TranscriptError(f"line {lineno}: bad regex: {exc}") from None
            t.steps.append(Expect(line[3:], True, lineno))
        elif line == "!starttls":
            t.steps.append(StartTls(lineno))
        elif line == "!close":
            t.steps.append(ExpectClose(lineno))
        elif line.startswith("!wait "):
            t.steps.append(Wait(float(line[6:]), lineno))
        elif line.startswith("!expect-content "):
            t.steps.append(ExpectContent(unescape(line[16:]), lineno))
        elif line.startswith("!config "):
            if t.steps:
                raise TranscriptError(f"line {lineno}: !config must come first")
            key, eq, value = line[8:].partition("=")
            if not eq:
                raise TranscriptError(f"line {lineno}: !config needs key=value")
            t.config[key.strip()] = _config_value(key.strip(), value.strip(), lineno)
        else:
            raise TranscriptError(f"line {lineno}: cannot parse {line!r}")
    flush()
    return t


def load_transcript(path: str | Path) -> Transcript:
    p = Path(path)
    return parse_transcript(p.read_text(encoding="utf-8"), p.name)


# --- the in-memory runner ---------------------------------------------------------


class DefaultPolicy:
    """The fixed fake policy of the module docstring."""

    def __init__(self) -> None:
        self._ids = 0
        self.user: str | None = None  # set by an accepted AuthRequested

    def decide(self, event: Event) -> Reply | None:
        if isinstance(event, AuthRequested):
            if (event.username.lower(), event.password) == TRANSCRIPT_USER and not event.authzid:
                self.user = TRANSCRIPT_USER[0]
                return None
            return R.AUTH_FAILED
        if isinstance(event, MailRequested) and self.user is not None and event.sender is not None:
            if str(event.sender).lower() != self.user:
                return R.SENDER_NOT_OWNED
        if isinstance(event, RcptRequested):
            rcpt = event.recipient
            if rcpt.domain == "localhost" or (rcpt.is_postmaster and rcpt.domain == ""):
                return None
            if rcpt.local.lower() == "unknown" and rcpt.domain == "known.example":
                return R.UNKNOWN_USER
            return None if self.user is not None else R.RELAY_DENIED
        if isinstance(event, DataFinished):
            self._ids += 1
            return R.queued(f"4B{self._ids:06X}")
        return None  # MailRequested, DataStarted


@dataclass
class RunResult:
    """What an in-memory run observed (for further assertions in tests)."""

    events: list[Event] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    output: bytes = b""
    closed: bool = False


class _MemoryRun:
    def __init__(self, transcript: Transcript, policy: DefaultPolicy) -> None:
        self.t = transcript
        self.policy = policy
        self.now = 0.0
        self.session = ServerSession(SessionConfig(**transcript.config), now=0.0)  # type: ignore[arg-type]
        self.result = RunResult()
        self.lines: list[str] = []
        self._partial = b""
        self._content: list[bytes] = []
        self._tls_requested = False

    def fail(self, lineno: int, msg: str) -> TranscriptMismatch:
        return TranscriptMismatch(f"{self.t.name}:{lineno}: {msg}")

    def pump(self) -> None:
        s = self.session
        while True:
            ev = s.next_event()
            if ev is NEED_DATA:
                break
            self.result.events.append(ev)
            if isinstance(ev, DataReceived):
                self._content.append(ev.data)
            elif isinstance(ev, (DataAborted, TransactionReset)):
                self._content = []
            elif isinstance(ev, ConnectionClosing):
                self.result.closed = True
            if isinstance(ev, StartTlsRequested):
                self._tls_requested = True
            if isinstance(ev, AuthKeysRequested):
                s.respond_keys(None, now=self.now)
            if isinstance(
                ev,
                (
                    MailRequested,
                    RcptRequested,
                    DataStarted,
                    DataFinished,
                    AuthRequested,
                    EtrnRequested,
                ),
            ):
                if isinstance(ev, DataStarted):
                    self._content = []
                answer = self.policy.decide(ev)
                if isinstance(ev, DataFinished) and (answer is None or answer.positive):
                    self.result.messages.append(b"".join(self._content))
                    self._content = []
                s.respond(answer, now=self.now)
        out = s.data_to_send()
        self.result.output += out
        data = self._partial + out
        *complete, self._partial = data.split(b"\r\n")
        self.lines.extend(c.decode("utf-8", "replace") for c in complete)

    def run(self) -> RunResult:
        s = self.session
        s.start(self.now)
        self.pump()
        last_line = 0
        for step in self.t.steps:
            last_line = step.lineno
            if isinstance(step, Send):
                if self.result.closed:
                    raise self.fail(step.lineno, "sending, but the server closed the connection")
                s.receive_data(step.data, self.now)
                self.pump()
            elif isinstance(step, Wait):
                self.now += step.seconds
                s.on_timer(self.now)
                self.pump()
            elif isinstance(step, Expect):
                if not self.lines:
                    raise self.fail(
                        step.lineno, f"expected {step.text!r}, server sent nothing more"
                    )
                got = self.lines.pop(0)
                if not step.matches(got):
                    raise self.fail(step.lineno, f"expected {step.text!r}, got {got!r}")
            elif isinstance(step, StartTls):
                if not self._tls_requested:
                    raise self.fail(
                        step.lineno, "!starttls, but the server did not accept STARTTLS"
                    )
                if self.lines or self._partial:
                    raise self.fail(
                        step.lineno,
                        f"unread server output before the handshake "
                        f"{self.lines + [self._partial]!r}",
                    )
                self._tls_requested = False
                self.policy.user = None  # RFC 3207 §4.2: everything is forgotten
                s.tls_started(MEMORY_TLS, self.now)
                self.pump()
            elif isinstance(step, ExpectClose):
                if not self.result.closed:
                    raise self.fail(step.lineno, "expected the server to close the connection")
            elif isinstance(step, ExpectContent):
                if not self.result.messages:
                    raise self.fail(step.lineno, "no message was accepted")
                if self.result.messages[-1] != step.data:
                    raise self.fail(
                        step.lineno, f"content {self.result.messages[-1]!r} != {step.data!r}"
                    )
        if self.lines or self._partial:
            raise self.fail(last_line, f"unexpected server output {self.lines + [self._partial]!r}")
        if self.result.closed and not any(isinstance(st, ExpectClose) for st in self.t.steps):
            raise self.fail(last_line, "the server closed the connection unexpectedly")
        return self.result


def run_in_memory(transcript: Transcript, policy: DefaultPolicy | None = None) -> RunResult:
    """Run `transcript` against a ServerSession; raise TranscriptMismatch on a difference."""
    return _MemoryRun(transcript, policy or DefaultPolicy()).run()
