"""Fuzz targets shared by the hypothesis tests (CI) and the atheris entry points (long runs).

Each target takes raw bytes and checks the component's contract; it raises
AssertionError (or lets an unexpected exception escape) on a violation.
Expected protocol errors (CommandError, PathError, ParamError, replies)
are the contract, not failures.

  session_target   ServerSession fed the bytes in pieces: never raises, only
                   well-formed reply lines, at most one message per end marker
                   or BDAT LAST, output bounded by input (no amplification loop).
  command_target   CommandLineReader + parse_command + argument helpers.
  address_target   parse_path/split_path: only PathError; a parsed address
                   survives str() -> parse again unchanged (idempotent).
  params_target    MAIL/RCPT parameter parsing: only ParamError.
  data_target      DotStuffer -> DotReader round trip for CRLF content.
"""

from __future__ import annotations

import re

from pigeon.proto import reply as R
from pigeon.proto.client_content import DotStuffer
from pigeon.proto.commands import (
    CommandError,
    bdat_argument,
    mail_argument,
    parse_command,
    rcpt_argument,
)
from pigeon.proto.content import ContentScanner
from pigeon.proto.datareader import BARE, DONE, DotReader
from pigeon.proto.events import (
    NEED_DATA,
    AuthKeysRequested,
    AuthRequested,
    DataFinished,
    DataReceived,
    DataStarted,
    MailRequested,
    RcptRequested,
)
from pigeon.proto.linebuf import CommandLineReader
from pigeon.proto.params import ParamError, parse_mail_params, parse_rcpt_params
from pigeon.proto.server import ServerSession, SessionConfig
from pigeon.vocab.address import PathError, parse_path, split_path

REPLY_LINE = re.compile(rb"[2-5][0-9][0-9][ -][^\r\n]*")
CONFIG = SessionConfig(max_errors=1000, max_message_size=100_000)


def run_session(
    data: bytes, split: int, config: SessionConfig = CONFIG
) -> tuple[bytes, list[bytes], int]:
    """Feed `data` in pieces of `split`; accept everything. Returns
    (all output, content of each finished message, DataReceived octets)."""
    session = ServerSession(config, now=0.0)
    session.start(0.0)
    out = bytearray(session.data_to_send())
    messages: list[bytes] = []
    current = bytearray()
    received = 0
    for i in range(0, len(data), max(1, split)):
        if session.closed:
            break
        session.receive_data(data[i : i + split], 1.0)
        while True:
            ev = session.next_event()
            if ev is NEED_DATA:
                break
            if isinstance(ev, DataReceived):
                current += ev.data
                received += len(ev.data)
            elif isinstance(ev, DataFinished):
                messages.append(bytes(current))
                current.clear()
                session.respond(R.queued("FUZZ"))
            elif isinstance(ev, DataStarted):
                current.clear()
                session.respond(None)
            elif isinstance(ev, (MailRequested, RcptRequested, AuthRequested)):
                session.respond(None)
            elif isinstance(ev, AuthKeysRequested):
                session.respond_keys(None)
        out += session.data_to_send()
    session.on_timer(10_000.0)  # every deadline has passed
    while session.next_event() is not NEED_DATA:
        pass
    out += session.data_to_send()
    return bytes(out), messages, received


def session_target(data: bytes) -> None:
    split = (data[0] % 64) + 1 if data else 1
    out, messages, received = run_session(data[1:], split)
    assert out.endswith(b"\r\n"), out[-80:]
    for line in out.split(b"\r\n")[:-1]:
        assert REPLY_LINE.fullmatch(line), line
    ends = data.count(b"\r\n.\r\n") + data.upper().count(b"LAST") + data.count(b"DATA\r\n.\r\n")
    assert len(messages) <= ends
    # No amplification: replies are bounded by what came in (greeting, one
    # multi-line EHLO per command at most, the final 421/timeout).
    assert len(out) <= 2048 + 64 * len(data), (len(out), len(data))
    # Content handed out never exceeds what came in.
    assert received <= len(data)


def command_target(data: bytes) -> None:
    buf = bytearray(data)
    reader = CommandLineReader(512, 2048)
    for _ in range(len(data) + 2):
        before = len(buf)
        item = reader.next_line(buf)
        if item is None:
            assert len(buf) < 2048  # only a partial line may be kept
            break
        if isinstance(item, R.Reply):
            assert item.code in (500, 501, 502, 503)
            continue
        assert len(item) <= 2048 - 2 and b"\n" not in item and b"\x00" not in item
        assert len(buf) < before
        try:
            cmd = parse_command(item)
        except CommandError as exc:
            assert isinstance(exc.reply, R.Reply)
            continue
        assert cmd.verb == cmd.verb.upper()
        for helper in (mail_argument, rcpt_argument, bdat_argument):
            try:
                helper(cmd.arg)
            except CommandError:
                pass


def address_target(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    for smtputf8 in (False, True):
        try:
            path, params = split_path(text)
            addr = parse_path(path, allow_null=True, smtputf8=smtputf8)
        except PathError:
            continue
        if addr is None:
            assert path == "<>"
            continue
        again = parse_path(f"<{addr}>", allow_null=False, smtputf8=smtputf8)
        assert again == addr, (text, str(addr), again)


def params_target(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    tokens = text.split(" ")
    for parse in (parse_mail_params, parse_rcpt_params):
        try:
            parse(tokens, cfg=SessionConfig(auth_mechanisms=("PLAIN",)))
        except ParamError as exc:
            assert isinstance(exc.reply, R.Reply)


def unstuff(wire: bytes, split: int) -> tuple[bytes, str]:
    """Run DATA wire octets (after the DATA command) through the server's DotReader."""
    scanner = ContentScanner(max_text_line=1000, max_size=0, hop_limit=100, reject_8bit=False)
    reader = DotReader(scanner, 1000)
    buf = bytearray()
    out = bytearray()
    status = "more"
    for i in range(0, len(wire), max(1, split)):
        buf += wire[i : i + split]
        while True:
            piece, status = reader.read(buf)
            if piece:
                out += piece
            if status in (DONE, BARE) or piece is None:
                break
        if status in (DONE, BARE):
            break
    return bytes(out), status


def stuff(content: bytes, pieces: list[int]) -> bytes:
    """The client's DotStuffer over `content` cut at `pieces` offsets."""
    stuffer = DotStuffer()
    wire = bytearray()
    last = 0
    for cut in sorted(set(p % (len(content) + 1) for p in pieces)) + [len(content)]:
        wire += stuffer.feed(content[last:cut])
        last = cut
    return bytes(wire + stuffer.end())


def expected_content(content: bytes) -> bytes:
    """What the server keeps: the content, with the CRLF DATA needs at its end."""
    if content == b"" or content.endswith(b"\r\n"):
        return content
    return content + b"\r\n"


def data_target(data: bytes) -> None:
    # Make CRLF-only content from arbitrary bytes (bare CR/LF are a protocol
    # error by design; NUL marks the message failed): map the rest to lines.
    body = data[2:].replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")
    content = b"\r\n".join(body[i : i + 70] for i in range(0, len(body), 70))
    if data[:1] and data[0] & 1:
        content += b"\r\n"
    split = (data[1] % 97) + 1 if len(data) > 1 else 7
    wire = stuff(content, [b for b in data[:8]])
    got, status = unstuff(wire, split)
    assert status == DONE, status
    assert got == expected_content(content)
