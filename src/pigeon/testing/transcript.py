r"""SMTP conversation transcripts (`tests/transcripts/*.smtp`): the format and its parser.

A transcript is a plain-text script of one SMTP conversation, seen from the
client. The same file runs in memory through the real driver and decisions
(`pigeon.testing.transcript_memory`, `run_in_memory`) and against a live
server on loopback (`pigeon.testing.transcript_live`), both built on
`parse_transcript`. The parser knows nothing about either runner, and this
module imports no I/O module (tests/unit/proto/test_no_io.py).

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
                               the TLS handshake here (in memory: the driver's
                               handshake completes with a fixed TlsInfo; live: a
                               real handshake, certificate not verified). Reply
                               lines still unread at this point are an error.
    !wait SECONDS              let time pass (in memory: advance the clock and
                               fire timers)
    !expect-content escaped    in-memory only: the content of the last message
                               accepted (250 after DATA/BDAT), as queued without
                               our Received: field, equals these bytes (live
                               runners skip it)

Consecutive C:/R: lines form one write (so they are pipelined); S: lines
consume the server's output in order. After the last directive every reply
line must have been expected, and the connection must still be open unless
`!close` said otherwise. A transcript normally starts with the greeting
(`S~ 220 .*`).

Both runners use the same configuration (transcript_live.LIVE_BASE_CONFIG
and the `!config` lines): hostname "localhost", local domains "localhost"
(any mailbox) and "known.example" (only "known": "unknown@known.example"
gets 550 5.1.1), no relay networks (other domains get 554 5.7.1). Accepted
messages are queued (match the reply with `S~ 250 2\.0\.0 Ok: queued as
\S+`). AUTH: the one account is `TRANSCRIPT_USER`, "alice@localhost" with
the password "secret" (owning that address); once logged in, RCPT to any
domain is accepted (unknown local users still are not) and MAIL FROM must
be <alice@localhost> or <> (553 5.7.1).
`!config auth_mechanisms=PLAIN,LOGIN` takes a comma-separated list;
`!config auth_required=true` plays against the submission role.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from pigeon.proto.events import TlsInfo
from pigeon.proto.server import SessionConfig


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
