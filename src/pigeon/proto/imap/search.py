"""SEARCH evaluation: a key tree (searchparse) against one message (RFC 9051 §6.4.4).

Contract:
  * `matches(key, msg, ctx)` answers whether message `msg` (a `MessageView`)
    satisfies `key`. `ctx` carries what "*" means (the largest sequence
    number and UID of the mailbox, RFC 9051 §6.4.4 sequence-set).
  * `MessageView` is a small protocol the server implements: seq, uid,
    flags, size, internaldate, modseq as attributes, and two methods that
    may read the file: `header_section()` (the header octets) and
    `content()` (the whole message octets). `Message` is a ready
    implementation over a loader, reading the file at most once and only
    when asked. Keys are tried cheapest first, so a search on flags, sizes,
    dates, UIDs or MODSEQ never calls either method (`needs_file(key)`
    tells the server in advance).
  * Strings match as case-insensitive substrings after Unicode case folding
    (RFC 9051 §6.4.4; CHARSET UTF-8). Header values match raw and with their
    encoded-words decoded (RFC 2047), so "Grüße" finds
    "=?UTF-8?B?R3LDvMOfZQ==?="; BODY and TEXT search the text parts with
    their transfer encoding and charset undone (and the raw octets).
  * HEADER with an empty string matches every message that has the field.
  * Dates compare the calendar date only, in the time zone they carry
    (RFC 9051 §6.4.4 "disregarding time and timezone"); SENT* keys use the
    Date: field, and a message without a readable one does not match them.
  * `esearch_results(numbers, options)` builds the ESEARCH items (RFC 4731).
  * Nothing here raises for any message content.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from typing import Protocol

from pigeon.proto.imap.envelope import header_fields
from pigeon.proto.imap.mime import Part, header_end, parse_structure
from pigeon.proto.imap.searchparse import (
    All,
    And,
    DateKey,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    Not,
    Or,
    SearchKey,
    SeqKey,
    SizeKey,
    TextKey,
)
from pigeon.proto.imap.sections import UnknownEncoding, binary_bytes, find_part
from pigeon.proto.imap.seqset import compress


class MessageView(Protocol):
    seq: int
    uid: int
    flags: frozenset[str]
    size: int
    internaldate: dt.datetime
    modseq: int

    def header_section(self) -> bytes: ...

    def content(self) -> bytes: ...


@dataclass
class Message:
    """A `MessageView` over the store's facts and a loader of the file."""

    seq: int
    uid: int
    flags: frozenset[str]
    size: int
    internaldate: dt.datetime
    modseq: int
    load: Callable[[], bytes]
    #: Reads only the header section (e.g. the file's first blocks), if the server can.
    load_header: Callable[[], bytes] | None = None
    _data: bytes | None = field(default=None, repr=False)
    _header: bytes | None = field(default=None, repr=False)

    def content(self) -> bytes:
        if self._data is None:
            self._data = self.load()
        return self._data

    def header_section(self) -> bytes:
        if self._header is None:
            if self._data is None and self.load_header is not None:
                self._header = self.load_header()
            else:
                data = self.content()
                self._header = data[: header_end(data, 0, len(data))]
        return self._header


@dataclass(frozen=True, slots=True)
class SearchContext:
    largest_seq: int
    largest_uid: int


def _any(key: SearchKey, leaf: Callable[[SearchKey], bool]) -> bool:
    """Whether some key of the tree satisfies `leaf`."""
    if isinstance(key, And):
        return any(_any(k, leaf) for k in key.keys)
    if isinstance(key, Or):
        return _any(key.left, leaf) or _any(key.right, leaf)
    if isinstance(key, Not):
        return _any(key.key, leaf)
    return leaf(key)


def _reads_file(key: SearchKey) -> bool:
    return isinstance(key, HeaderKey | TextKey) or (isinstance(key, DateKey) and key.sent)


def needs_file(key: SearchKey) -> bool:
    return _any(key, _reads_file)


def _cost(key: SearchKey) -> int:
    """0: the store's facts; 1: the header section; 2: the whole message."""
    if _any(key, lambda k: isinstance(k, TextKey)):
        return 2
    return 1 if needs_file(key) else 0


def _fold(text: str) -> str:
    return text.casefold()


def _decoded(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # any malformed encoded-word: the raw value still counts
        return value


def _header_values(msg: MessageView, name: str) -> list[str]:
    lname = name.lower()
    return [v for k, v in header_fields(msg.header_section()) if k.lower() == lname]


def _header_match(msg: MessageView, key: HeaderKey) -> bool:
    values = _header_values(msg, key.name)
    if not key.value:
        return bool(values)
    needle = _fold(key.value)
    for value in values:
        raw = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if needle in _fold(raw) or needle in _fold(_decoded(raw)):
            return True
    return False


def _leaves(root: Part) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    stack: list[tuple[Part, tuple[int, ...]]] = [(root, ())]
    while stack:
        part, path = stack.pop()
        if part.is_multipart:
            stack.extend((c, (*path, i)) for i, c in enumerate(part.children, 1))
        elif part.message is not None:
            stack.append((part.message, (*path, 1) if path else (1,)))
        elif part.type.lower() in ("text", ""):
            out.append(path or (1,))
    return out


def _body_texts(data: bytes, root: Part) -> list[str]:
    texts = []
    for path in _leaves(root):
        part = find_part(root, path)
        if part is None:
            continue
        try:
            octets = binary_bytes(data, root, path)
        except UnknownEncoding:
            octets = data[part.body_start : part.end]
        charset = next((v for k, v in part.params if k.lower() == "charset"), "utf-8")
        try:
            texts.append(octets.decode(charset, "replace"))
        except LookupError:
            texts.append(octets.decode("utf-8", "replace"))
    return texts


def _text_match(msg: MessageView, key: TextKey) -> bool:
    data = msg.content()
    root = parse_structure(data)
    needle = _fold(key.value)
    if key.whole:
        header = data[root.start : root.body_start].decode("utf-8", "replace")
        if needle in _fold(header) or any(
            needle in _fold(_decoded(v))
            for _, v in header_fields(data[root.start : root.body_start])
        ):
            return True
    if needle in _fold(data[root.body_start : root.end].decode("utf-8", "replace")):
        return True
    return any(needle in _fold(t) for t in _body_texts(data, root))


_DATE = re.compile(r"(\d{1,2})\s+([A-Za-z]{3})[A-Za-z]*\.?\s+(\d{2,4})\b")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def _sent_date(msg: MessageView) -> dt.date | None:
    """The calendar date of the Date: field as written, i.e. in its own zone
    (RFC 5322 §3.3; two-digit years per §4.3). Parsed here rather than with
    email.utils, which would load the socket module into the protocol core."""
    values = _header_values(msg, "Date")
    match = _DATE.search(values[0]) if values else None
    if match is None or match.group(2).lower() not in _MONTHS:
        return None
    year = int(match.group(3))
    if len(match.group(3)) < 4:
        year += 2000 if year < 50 else 1900
    try:
        return dt.date(year, _MONTHS.index(match.group(2).lower()) + 1, int(match.group(1)))
    except ValueError:
        return None


def _date_match(key: DateKey, when: dt.date | None) -> bool:
    if when is None:
        return False
    if key.op == "BEFORE":
        return when < key.date
    if key.op == "ON":
        return when == key.date
    return when >= key.date  # SINCE


def _has_flag(msg: MessageView, flag: str) -> bool:
    lower = flag.lower()
    return any(f.lower() == lower for f in msg.flags)


def matches(key: SearchKey, msg: MessageView, ctx: SearchContext) -> bool:
    if isinstance(key, All):
        return True
    if isinstance(key, And):
        return all(matches(k, msg, ctx) for k in sorted(key.keys, key=_cost))
    if isinstance(key, Or):
        first, second = sorted((key.left, key.right), key=_cost)
        return matches(first, msg, ctx) or matches(second, msg, ctx)
    if isinstance(key, Not):
        return not matches(key.key, msg, ctx)
    if isinstance(key, FlagKey):
        return _has_flag(msg, key.flag) == key.present
    if isinstance(key, SeqKey):
        if key.uid:
            return key.seqset.contains(msg.uid, ctx.largest_uid)
        return key.seqset.contains(msg.seq, ctx.largest_seq)
    if isinstance(key, SizeKey):
        return msg.size > key.size if key.larger else msg.size < key.size
    if isinstance(key, ModSeqKey):
        return msg.modseq >= key.modseq  # RFC 7162 §3.1.5
    if isinstance(key, DateKey):
        return _date_match(key, _sent_date(msg) if key.sent else msg.internaldate.date())
    if isinstance(key, HeaderKey):
        return _header_match(msg, key)
    if isinstance(key, TextKey):
        return _text_match(msg, key)
    raise TypeError(f"unknown search key {key!r}")


def esearch_results(numbers: Sequence[int], options: frozenset[str]) -> list[tuple[str, int | str]]:
    """The ESEARCH result items for sorted matches (RFC 4731 §3.1): MIN, MAX
    and ALL only when something matched, COUNT always."""
    out: list[tuple[str, int | str]] = []
    if numbers:
        if "MIN" in options:
            out.append(("MIN", numbers[0]))
        if "MAX" in options:
            out.append(("MAX", numbers[-1]))
        if "ALL" in options:
            out.append(("ALL", compress(numbers)))
    if "COUNT" in options:
        out.append(("COUNT", len(numbers)))
    return out
