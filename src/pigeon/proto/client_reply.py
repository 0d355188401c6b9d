"""Client side of SMTP replies: the reply parser and the EHLO extension list.

Contract:
  * `ReplyParser.feed(data)` takes bytes as they arrive and returns the
    complete replies found so far, in order, as `Reply` values (the same type
    the server sends, proto/reply.py). Partial lines stay buffered.
  * Multi-line replies follow RFC 5321 §4.2.1: every line but the last is
    "ddd-text", the last "ddd text" or just "ddd"; all lines carry the same
    code. The first digit must be 2..5 and the second 0..5 (§4.2.1, §4.3.2).
  * Anything else is malformed: `feed()` raises `MalformedReply` and the
    parser must not be used again (the caller treats the session as failed,
    a transient error; RFC 5321 gives no way to resynchronise).
  * Buffers are bounded: a reply line longer than `max_line` octets or a
    reply with more than `max_lines` lines is malformed. (RFC 5321
    §4.5.3.1.5 allows 512 octets per reply line; we accept more because
    real servers send long EHLO and rejection texts.)
  * Enhanced status codes (RFC 2034 §3, RFC 3463) are taken off the start of
    the text when present and of the same class as the reply code; the
    remaining text lines go into `Reply.lines`. Text is decoded as UTF-8
    with replacement (RFC 6531 servers may send UTF-8; anything else is
    shown, never trusted).
  * `Extensions.parse(ehlo_reply)` turns the EHLO/LHLO reply lines after the
    first into keywords and parameters (RFC 5321 §4.1.1.1: ehlo-line =
    ehlo-keyword *( SP ehlo-param )); keywords are case-insensitive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pigeon.proto.reply import Reply

_LINE = re.compile(rb"([2-5][0-5][0-9])([ -]|$)(.*)", re.S)
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")


class MalformedReply(ValueError):
    """The peer sent something that is not an RFC 5321 reply."""


class ReplyParser:
    """Bytes in, `Reply` values out (see the module contract)."""

    def __init__(self, max_line: int = 4096, max_lines: int = 200) -> None:
        self.max_line = max_line
        self.max_lines = max_lines
        self._buf = bytearray()
        self._lines: list[bytes] = []
        self._code: bytes | None = None

    @property
    def pending(self) -> bool:
        """True while part of a reply has arrived but not its last line."""
        return bool(self._buf) or bool(self._lines)

    def feed(self, data: bytes) -> list[Reply]:
        self._buf += data
        out: list[Reply] = []
        while True:
            end = self._buf.find(b"\n")
            if end == -1:
                if len(self._buf) > self.max_line:
                    raise MalformedReply(f"reply line longer than {self.max_line} octets")
                return out
            raw = bytes(self._buf[:end])
            del self._buf[: end + 1]
            # RFC 5321 says CRLF; a bare LF is tolerated as Postfix's client does.
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if len(raw) > self.max_line:
                raise MalformedReply(f"reply line longer than {self.max_line} octets")
            m = _LINE.fullmatch(raw)
            if not m:
                raise MalformedReply(f"malformed reply line {raw[:80]!r}")
            code, sep, text = m.groups()
            if self._code is not None and code != self._code:
                raise MalformedReply(f"reply code changed within a reply: {raw[:80]!r}")
            self._code = code
            self._lines.append(text)
            if len(self._lines) > self.max_lines:
                raise MalformedReply(f"reply longer than {self.max_lines} lines")
            if sep != b"-":
                out.append(_build(int(code), self._lines))
                self._lines = []
                self._code = None


def _build(code: int, raw_lines: list[bytes]) -> Reply:
    lines = [r.decode("utf-8", "replace") for r in raw_lines]
    enhanced = None
    m = _ENHANCED.match(lines[0])
    if m and int(m.group(1)) == code // 100:
        enhanced = f"{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}"
        lines = [_strip_enhanced(line, m.group(0).strip()) for line in lines]
    if not any(lines):
        lines = [""]
    return Reply(code, enhanced, tuple(lines))


def _strip_enhanced(line: str, code: str) -> str:
    if line.startswith(code):
        return line[len(code) :].lstrip(" ")
    return line


def reply_text(reply: Reply) -> str:
    """The reply as one line the way logs and DSNs show it: "550 5.1.1 text / more"."""
    head = f"{reply.code} {reply.enhanced} " if reply.enhanced else f"{reply.code} "
    return (head + " / ".join(line for line in reply.lines if line)).rstrip()


@dataclass(frozen=True, slots=True)
class Extensions:
    """What the peer advertised in its EHLO/LHLO reply (empty after HELO)."""

    #: First word of the first reply line: the name the server gives itself.
    server_name: str = ""
    #: Keyword (upper case) -> parameters (as sent).
    keywords: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, ehlo: Reply) -> Extensions:
        first = ehlo.lines[0].split()
        words: dict[str, tuple[str, ...]] = {}
        for line in ehlo.lines[1:]:
            parts = line.split()
            if parts:
                words[parts[0].upper()] = tuple(parts[1:])
        return cls(first[0] if first else "", words)

    def has(self, keyword: str) -> bool:
        return keyword.upper() in self.keywords

    @property
    def size_limit(self) -> int | None:
        """RFC 1870 §4: "SIZE n"; 0 or no number means no fixed limit."""
        params = self.keywords.get("SIZE")
        if not params:
            return None
        try:
            n = int(params[0])
        except ValueError:
            return None
        return n or None

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        """RFC 4954 §3: "AUTH mech1 mech2 ..." (also the pre-standard "AUTH=")."""
        mechs = set(self.keywords.get("AUTH", ()))
        for key, params in self.keywords.items():
            if key.startswith("AUTH="):
                mechs.update([key[5:], *params])
        return frozenset(m.upper() for m in mechs)
