"""Token cursor over one IMAP command: its line segments and the literals between them.

Contract:
  * A command arrives from `reader.CommandReader` as a `RawCommand`: the
    command line cut at each literal marker (`{n}`, `{n+}`, `~{n}`; RFC 9051
    §4.3, RFC 7888, RFC 3516) into `segments`, and the literal octets in
    `literals` (one fewer than the segments). The marker itself is gone: a
    cursor at the end of a segment that is followed by a literal reads that
    literal as a string.
  * `Cursor` reads the RFC 9051 §9 lexical items: atom, number, quoted,
    literal, string, astring, nstring, and single characters. Every read
    checks its syntax and raises `ParseError(text)` on a violation; nothing
    else is raised. Text is UTF-8 (RFC 9051 §4.3: IMAP4rev2 strings are
    UTF-8; an IMAP4rev1 client sends ASCII): octets that are not valid UTF-8
    are a `ParseError`, except where a caller asks for raw octets
    (`string_bytes`: a message to APPEND, a password).
  * Numbers are bounded (RFC 9051 §9 number64: 63 bits), so no token makes an
    unbounded integer.
"""

from __future__ import annotations

from dataclasses import dataclass

#: RFC 9051 §9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards /
#: quoted-specials / resp-specials.
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]')
ATOM_CHARS = frozenset(c for c in range(0x21, 0x7F) if c not in _ATOM_SPECIALS)
#: ASTRING-CHAR = ATOM-CHAR / resp-specials
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
#: list-char = ATOM-CHAR / list-wildcards / resp-specials
LIST_CHARS = ASTRING_CHARS | {ord("%"), ord("*")}
#: tag = 1*<any ASTRING-CHAR except "+">
TAG_CHARS = ASTRING_CHARS - {ord("+")}
MAX_NUMBER = 2**63 - 1


class ParseError(Exception):
    """The client's command breaks the grammar; the text says where (for a BAD)."""


@dataclass(frozen=True, slots=True)
class Literal:
    data: bytes
    binary: bool = False  # literal8 (~{n}, RFC 3516 §4.1)


@dataclass(frozen=True, slots=True)
class RawCommand:
    segments: tuple[bytes, ...]
    literals: tuple[Literal, ...]


def decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("8-bit text must be UTF-8") from None


class Cursor:
    """Reads the lexical items of one command in order (RFC 9051 §9)."""

    __slots__ = ("_segments", "_literals", "_index", "_pos")

    def __init__(self, raw: RawCommand) -> None:
        self._segments = raw.segments
        self._literals = raw.literals
        self._index = 0
        self._pos = 0

    # -- position ---------------------------------------------------------
    @property
    def _seg(self) -> bytes:
        return self._segments[self._index]

    def mark(self) -> tuple[int, int]:
        return (self._index, self._pos)

    def reset(self, mark: tuple[int, int]) -> None:
        self._index, self._pos = mark

    def at_end(self) -> bool:
        return self._index == len(self._segments) - 1 and self._pos == len(self._seg)

    def at_literal(self) -> bool:
        return self._pos == len(self._seg) and self._index < len(self._segments) - 1

    def peek(self) -> int | None:
        """The next character, or None at the end of a segment."""
        seg = self._seg
        return seg[self._pos] if self._pos < len(seg) else None

    def peek_char(self, chars: bytes) -> bool:
        c = self.peek()
        return c is not None and c in chars

    def maybe(self, text: bytes) -> bool:
        """Consume `text` (case-insensitive) when it comes next."""
        seg = self._seg
        end = self._pos + len(text)
        if seg[self._pos : end].upper() == text.upper():
            self._pos = end
            return True
        return False

    def expect(self, text: bytes) -> None:
        if not self.maybe(text):
            raise ParseError(f"expected {text.decode('ascii')!r}")

    def sp(self) -> None:
        self.expect(b" ")

    def end(self) -> None:
        if not self.at_end():
            raise ParseError("unexpected characters at the end of the command")

    # -- tokens -----------------------------------------------------------
    def take(self, chars: frozenset[int], what: str = "atom") -> bytes:
        seg = self._seg
        start = pos = self._pos
        while pos < len(seg) and seg[pos] in chars:
            pos += 1
        if pos == start:
            raise ParseError(f"expected {what}")
        self._pos = pos
        return seg[start:pos]

    def atom(self) -> str:
        return self.take(ATOM_CHARS).decode("ascii")

    def number(self) -> int:
        digits = self.take(frozenset(b"0123456789"), "number")
        if len(digits) > 19 or int(digits) > MAX_NUMBER:
            raise ParseError("number too large")
        return int(digits)

    def nz_number(self) -> int:
        n = self.number()
        if n == 0:
            raise ParseError("expected a non-zero number")
        return n

    def quoted_bytes(self) -> bytes:
        """quoted = DQUOTE *QUOTED-CHAR DQUOTE (RFC 9051 §9: only \\\\ and \\" escaped)."""
        self.expect(b'"')
        seg = self._seg
        out = bytearray()
        pos = self._pos
        while pos < len(seg):
            c = seg[pos]
            if c == 0x22:
                self._pos = pos + 1
                return bytes(out)
            if c == 0x5C:
                pos += 1
                if pos >= len(seg) or seg[pos] not in b'"\\':
                    raise ParseError("bad escape in quoted string")
                c = seg[pos]
            elif c in b"\r\n\x00":
                break
            out.append(c)
            pos += 1
        raise ParseError("unterminated quoted string")

    def literal(self) -> Literal:
        if not self.at_literal():
            raise ParseError("expected a literal")
        lit = self._literals[self._index]
        self._index += 1
        self._pos = 0
        return lit

    def string_bytes(self) -> bytes:
        """string = quoted / literal, as raw octets."""
        if self.at_literal():
            lit = self.literal()
            if lit.binary:  # literal8 is only valid where the grammar says (APPEND)
                raise ParseError("literal8 not allowed here")
            return lit.data
        if self.peek() == 0x22:
            return self.quoted_bytes()
        raise ParseError("expected a string")

    def string(self) -> str:
        return decode_text(self.string_bytes())

    def astring_bytes(self) -> bytes:
        if self.at_literal() or self.peek() == 0x22:
            return self.string_bytes()
        return self.take(ASTRING_CHARS, "astring")

    def astring(self) -> str:
        return decode_text(self.astring_bytes())

    def nstring(self) -> str | None:
        if self.maybe(b"NIL"):
            return None
        return self.string()

    def list_mailbox(self) -> str:
        """list-mailbox = 1*list-char / string (RFC 9051 §9: LIST patterns)."""
        if self.at_literal() or self.peek() == 0x22:
            return self.string()
        return decode_text(self.take(LIST_CHARS, "mailbox pattern"))

    def atom_list(self, allowed: frozenset[str], what: str, empty: bool = True) -> list[str]:
        """ "(" [atom *(SP atom)] ")", upper case, each one of `allowed`."""
        self.expect(b"(")
        out: list[str] = []
        while not self.maybe(b")"):
            if out:
                self.sp()
            word = self.atom().upper()
            if word not in allowed:
                raise ParseError(f"unknown {what} {word[:30]}")
            out.append(word)
        if not out and not empty:
            raise ParseError(f"empty {what} list")
        return out
