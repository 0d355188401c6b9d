"""SEARCH criteria as a key tree (RFC 9051 §6.4.4, RFC 3501 §6.4.4, RFC 7162 §3.1.5).

Contract:
  * `parse_search(cursor)` reads the arguments of SEARCH / UID SEARCH:
    `[RETURN (opts)] [CHARSET name] key *(SP key)` (RFC 4731 §3 / RFC 9051
    §6.4.4) into a `SearchArgs`. Several keys are their AND.
  * The tree is plain frozen values: `And`, `Or`, `Not`, `All`, `FlagKey`
    (flag present or absent; NEW, OLD, RECENT and the UN- forms are
    expressed with it), `SeqKey` (a sequence set of numbers or UIDs),
    `DateKey` (internal date or Date: header; BEFORE / ON / SINCE), `SizeKey`,
    `HeaderKey` (FROM / TO / CC / BCC / SUBJECT are HEADER keys),
    `TextKey` (BODY or TEXT), `ModSeqKey` (RFC 7162 §3.1.5).
  * Nesting (parentheses, NOT, OR) is bounded by `MAX_DEPTH`: deeper is a
    ParseError, never a RecursionError.
  * The charset is reported, not judged: the driver answers NO [BADCHARSET]
    for one outside `CHARSETS` (RFC 9051 §6.4.4).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pigeon.proto.imap.lexer import ATOM_CHARS, Cursor, ParseError
from pigeon.proto.imap.seqset import SequenceSet, parse_sequence_set

MAX_DEPTH = 50
#: RFC 9051 §6.4.4: US-ASCII and UTF-8 must be supported; we support those.
CHARSETS = ("UTF-8", "US-ASCII")
#: RFC 4731 §3.1 result options (SAVE, RFC 5182, is not offered).
RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT"})
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


class SearchKey:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class All(SearchKey):
    pass


@dataclass(frozen=True, slots=True)
class And(SearchKey):
    keys: tuple[SearchKey, ...]


@dataclass(frozen=True, slots=True)
class Or(SearchKey):
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class Not(SearchKey):
    key: SearchKey


@dataclass(frozen=True, slots=True)
class FlagKey(SearchKey):
    flag: str  # "\\Seen", "\\Recent", a keyword
    present: bool = True


@dataclass(frozen=True, slots=True)
class SeqKey(SearchKey):
    seqset: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class DateKey(SearchKey):
    sent: bool  # Date: header (SENT*) vs internal date
    op: str  # "BEFORE", "ON", "SINCE"
    date: dt.date


@dataclass(frozen=True, slots=True)
class SizeKey(SearchKey):
    larger: bool
    size: int


@dataclass(frozen=True, slots=True)
class HeaderKey(SearchKey):
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class TextKey(SearchKey):
    whole: bool  # TEXT (header and body) vs BODY
    value: str


@dataclass(frozen=True, slots=True)
class ModSeqKey(SearchKey):
    modseq: int


@dataclass(frozen=True, slots=True)
class SearchArgs:
    key: SearchKey
    charset: str | None = None
    #: None: a plain SEARCH (the "* SEARCH" response); otherwise ESEARCH
    #: (RFC 4731): the options asked for, ALL when the list was empty.
    return_options: frozenset[str] | None = None

    @property
    def charset_supported(self) -> bool:
        return self.charset is None or self.charset.upper() in CHARSETS


_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "RECENT": ("\\Recent", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
    "OLD": ("\\Recent", False),
}
_HEADER_KEYS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "SUBJECT": "Subject", "TO": "To"}
_DATE_KEYS = {
    "BEFORE": (False, "BEFORE"),
    "ON": (False, "ON"),
    "SINCE": (False, "SINCE"),
    "SENTBEFORE": (True, "BEFORE"),
    "SENTON": (True, "ON"),
    "SENTSINCE": (True, "SINCE"),
}
_SEQ_CHARS = frozenset(b"0123456789:*,")


def parse_date(cur: Cursor) -> dt.date:
    """date = date-text / DQUOTE date-text DQUOTE; date-text = d-MMM-yyyy (RFC 9051 §9)."""
    quoted = cur.maybe(b'"')
    text = cur.take(ATOM_CHARS, "date").decode("ascii")
    if quoted:
        cur.expect(b'"')
    day, _, rest = text.partition("-")
    month, _, year = rest.partition("-")
    if not (day.isdigit() and 1 <= len(day) <= 2 and year.isdigit() and len(year) == 4):
        raise ParseError("bad date")
    if month.upper() not in MONTHS:
        raise ParseError("bad month in date")
    try:
        return dt.date(int(year), MONTHS.index(month.upper()) + 1, int(day))
    except ValueError:
        raise ParseError("bad date") from None


def _search_key(cur: Cursor, depth: int) -> SearchKey:
    if depth > MAX_DEPTH:
        raise ParseError("search criteria nested too deeply")
    if cur.maybe(b"("):
        keys = [_search_key(cur, depth + 1)]
        while cur.maybe(b" "):
            keys.append(_search_key(cur, depth + 1))
        cur.expect(b")")
        return keys[0] if len(keys) == 1 else And(tuple(keys))
    if cur.peek_char(b"0123456789*"):
        return SeqKey(sequence_set(cur))
    word = cur.take(ATOM_CHARS, "search key").decode("ascii").upper()
    if word == "ALL":
        return All()
    if word in _FLAG_KEYS:
        flag, present = _FLAG_KEYS[word]
        return FlagKey(flag, present)
    if word == "NEW":  # RFC 3501 §6.4.4: RECENT UNSEEN
        return And((FlagKey("\\Recent"), FlagKey("\\Seen", False)))
    cur.sp()
    if word == "NOT":
        return Not(_search_key(cur, depth + 1))
    if word == "OR":
        left = _search_key(cur, depth + 1)
        cur.sp()
        return Or(left, _search_key(cur, depth + 1))
    if word in _HEADER_KEYS:
        return HeaderKey(_HEADER_KEYS[word], cur.astring())
    if word == "HEADER":
        name = cur.astring()
        cur.sp()
        return HeaderKey(name, cur.astring())
    if word in ("BODY", "TEXT"):
        return TextKey(word == "TEXT", cur.astring())
    if word in ("KEYWORD", "UNKEYWORD"):
        return FlagKey(cur.atom(), word == "KEYWORD")
    if word in _DATE_KEYS:
        sent, op = _DATE_KEYS[word]
        return DateKey(sent, op, parse_date(cur))
    if word in ("LARGER", "SMALLER"):
        return SizeKey(word == "LARGER", cur.number())
    if word == "UID":
        return SeqKey(sequence_set(cur), uid=True)
    if word == "MODSEQ":
        if cur.peek_char(b'"'):  # entry-name entry-type-req (RFC 7162 §3.1.5): ignored
            cur.quoted_bytes()
            cur.sp()
            cur.atom()
            cur.sp()
        return ModSeqKey(cur.number())
    raise ParseError(f"unknown search key {word}")


def sequence_set(cur: Cursor) -> SequenceSet:
    try:
        return parse_sequence_set(cur.take(_SEQ_CHARS, "sequence set").decode("ascii"))
    except ValueError as exc:
        raise ParseError(str(exc)) from None


def parse_search(cur: Cursor) -> SearchArgs:
    return_options = None
    charset = None
    if cur.maybe(b"RETURN "):
        return_options = frozenset(cur.atom_list(RETURN_OPTIONS, "RETURN option") or {"ALL"})
        cur.sp()
    if cur.maybe(b"CHARSET "):
        charset = cur.astring()
        cur.sp()
    keys = [_search_key(cur, 1)]
    while cur.maybe(b" "):
        keys.append(_search_key(cur, 1))
    cur.end()
    key = keys[0] if len(keys) == 1 else And(tuple(keys))
    return SearchArgs(key, charset, return_options)
