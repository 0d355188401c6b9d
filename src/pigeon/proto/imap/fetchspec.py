"""FETCH attributes and body sections (RFC 9051 §6.4.5, §9 fetch-att, section).

Contract:
  * `parse_fetch_atts(cursor)` reads the attribute part of a FETCH: a macro
    (ALL, FAST, FULL, expanded per RFC 9051 §6.4.5), one attribute, or a
    parenthesised list, into a tuple of `FetchAtt`.
  * `parse_section(cursor)` reads "[...]" into a `Section` (part numbers,
    then HEADER / HEADER.FIELDS (..) / HEADER.FIELDS.NOT (..) / TEXT / MIME;
    MIME only after a part number, RFC 9051 §6.4.5).
  * `FetchAtt.response_name()` is the name the FETCH response carries:
    BODY.PEEK answers as BODY, a partial shows only its origin ("<0>").
  * Errors are `ParseError` from the cursor.
"""

from __future__ import annotations

from dataclasses import dataclass

from pigeon.proto.imap.lexer import ASTRING_CHARS, Cursor, ParseError

#: RFC 9051 §6.4.5: the macros and what they stand for.
MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
#: Attributes that are a bare keyword.
SIMPLE = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.TEXT",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",  # RFC 7162 §3.1.4.1
    }
)
#: Attributes that set \Seen when fetched (RFC 9051 §6.4.5: BODY[] but not BODY.PEEK).
_MAX_PART_DEPTH = 100


@dataclass(frozen=True, slots=True)
class Section:
    part: tuple[int, ...] = ()
    text: str | None = None  # HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        out = ".".join(str(p) for p in self.part)
        if self.text:
            out = f"{out}.{self.text}" if out else self.text
        if self.fields:
            # upper case, as Dovecot answers (clients match it case-blind)
            out += " (" + " ".join(f.upper() for f in self.fields) + ")"
        return out


@dataclass(frozen=True, slots=True)
class FetchAtt:
    """One attribute. `name` is a SIMPLE keyword, "BODY" (no section: the
    non-extensible BODYSTRUCTURE), "BODY[]" (a section), "BINARY[]" or
    "BINARY.SIZE" (RFC 3516 §4.2)."""

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None  # (origin, count)
    peek: bool = False

    @property
    def sets_seen(self) -> bool:
        """RFC 9051 §6.4.5: BODY[..] and RFC822(.TEXT) set \\Seen; .PEEK does not."""
        if self.name in ("BODY[]", "BINARY[]"):
            return not self.peek
        return self.name in ("RFC822", "RFC822.TEXT")

    def response_name(self) -> str:
        if self.name in ("BODY[]", "BINARY[]"):
            base = self.name[:-2]
            out = f"{base}[{self.section or ''}]"
            if self.partial is not None:
                out += f"<{self.partial[0]}>"
            return out
        if self.name == "BINARY.SIZE":
            return f"BINARY.SIZE[{self.section or ''}]"
        return self.name


def parse_section(cur: Cursor, binary: bool = False) -> Section:
    cur.expect(b"[")
    part: list[int] = []
    text: str | None = None
    fields: tuple[str, ...] = ()
    dot = False
    while cur.peek_char(b"123456789"):
        part.append(cur.nz_number())
        if len(part) > _MAX_PART_DEPTH:
            raise ParseError("section part too deep")
        dot = cur.maybe(b".")
        if not dot:
            break
    if dot and cur.peek_char(b"]"):
        raise ParseError("section ends with '.'")
    if part and not dot and not cur.peek_char(b"]"):
        raise ParseError("bad section")
    if not cur.peek_char(b"]"):
        if binary:
            raise ParseError("BINARY takes part numbers only")
        word = cur.take(
            frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz."), "section"
        )
        text = word.decode("ascii").upper()
        if text == "MIME" and not part:
            raise ParseError("MIME needs a part number")
        if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            cur.sp()
            fields = _header_list(cur)
        elif text not in ("HEADER", "TEXT", "MIME"):
            raise ParseError(f"unknown section {text}")
    cur.expect(b"]")
    return Section(tuple(part), text, fields)


def _header_list(cur: Cursor) -> tuple[str, ...]:
    cur.expect(b"(")
    names = [cur.astring()]
    while cur.maybe(b" "):
        names.append(cur.astring())
    cur.expect(b")")
    if any(not n or not n.isascii() or ":" in n for n in names):
        raise ParseError("bad header field name")
    return tuple(names)


def _partial(cur: Cursor) -> tuple[int, int] | None:
    if not cur.maybe(b"<"):
        return None
    origin = cur.number()
    cur.expect(b".")
    count = cur.nz_number()
    cur.expect(b">")
    return (origin, count)


def parse_fetch_att(cur: Cursor) -> FetchAtt:
    word = cur.take(ASTRING_CHARS - {ord("["), ord("]")}, "fetch attribute")
    name = word.decode("ascii").upper()
    if name in ("BODY", "BODY.PEEK") and cur.peek_char(b"["):
        section = parse_section(cur)
        return FetchAtt("BODY[]", section, _partial(cur), peek=name == "BODY.PEEK")
    if name in ("BINARY", "BINARY.PEEK") and cur.peek_char(b"["):
        section = parse_section(cur, binary=True)
        return FetchAtt("BINARY[]", section, _partial(cur), peek=name == "BINARY.PEEK")
    if name == "BINARY.SIZE" and cur.peek_char(b"["):
        return FetchAtt("BINARY.SIZE", parse_section(cur, binary=True))
    if name == "BODY":
        return FetchAtt("BODY")
    if name in SIMPLE:
        return FetchAtt(name)
    raise ParseError(f"unknown fetch attribute {name}")


def parse_fetch_atts(cur: Cursor) -> tuple[FetchAtt, ...]:
    if cur.maybe(b"("):
        atts = [parse_fetch_att(cur)]
        while cur.maybe(b" "):
            atts.append(parse_fetch_att(cur))
        cur.expect(b")")
        return tuple(atts)
    mark = cur.mark()
    word = cur.take(ASTRING_CHARS - {ord("["), ord("]")}, "fetch attribute").decode().upper()
    if word in MACROS:
        return tuple(FetchAtt(n) for n in MACROS[word])
    cur.reset(mark)
    return (parse_fetch_att(cur),)
