"""IMAP response encoder (RFC 9051 §7, §9 response grammar).

Contract:
  * Values become octets by type (`encode`): None is NIL; an int a number;
    `Atom` its text as is (flags, keywords, response-code words); str and
    bytes a string, quoted when short and safe, else a literal ("{n}" CRLF
    octets; RFC 9051 §4.3). "Safe" for a quoted string: no CR, LF or NUL, at
    most `QUOTED_MAX` octets, and 7-bit unless the client enabled UTF-8
    (IMAP4rev2 or UTF8=ACCEPT: RFC 9051 §4.3 / RFC 6855 §3 allow UTF-8 in
    quoted strings). `Literal8` is "~{n}" (BINARY, RFC 3516 §4.2); `Raw` is
    octets already encoded (written as is); lists and
    tuples are parenthesised lists.
  * Response lines: `untagged`, `tagged`, `continuation`, `bye`; a status
    text never carries CR or LF (it is cleaned), and a response code is
    written "[CODE args]" before it (RFC 9051 §7.1).
  * `code(name, *args)` builds response codes such as
    [UIDVALIDITY n], [APPENDUID v u], [COPYUID v set set],
    [HIGHESTMODSEQ n], [MODIFIED set], [TRYCREATE], [ALERT],
    [CAPABILITY ...], [TOOBIG], [BADCHARSET (..)].
  * `fetch_response(seq, items, utf8)` builds "* seq FETCH (...)" from
    (name, value) pairs in the order given.
  * Mailbox names go out in UTF-8 or modified UTF-7 (`mailbox`).
  * Pure functions; nothing here raises for any str/bytes content.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pigeon.proto.imap import mutf7
from pigeon.proto.imap.lexer import ASTRING_CHARS

QUOTED_MAX = 1024
CRLF = b"\r\n"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class Atom:
    """Text written as is: flags, keywords, capability names, pre-encoded items."""

    text: str


@dataclass(frozen=True, slots=True)
class Raw:
    """Octets already encoded (a cached BODYSTRUCTURE), written as they are."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Literal8:
    """Octets sent as literal8 (may hold NUL; RFC 3516 §4.2)."""

    data: bytes


Value = (
    None | int | str | bytes | Atom | Raw | Literal8 | Sequence["Value"]  # a parenthesised list
)


def string(data: str | bytes, utf8: bool = False) -> bytes:
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    if (
        len(raw) <= QUOTED_MAX
        and b"\r" not in raw
        and b"\n" not in raw
        and b"\x00" not in raw
        and (utf8 or raw.isascii())
    ):
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(raw) + raw


def astring(data: str, utf8: bool = False) -> bytes:
    raw = data.encode("utf-8", "surrogateescape")
    if raw and all(c in ASTRING_CHARS for c in raw) and raw.upper() != b"NIL":
        return raw
    return string(raw, utf8)


def mailbox(name: str, utf8: bool) -> bytes:
    """A mailbox name as the client reads it (RFC 9051 §5.1, RFC 3501 §5.1.3)."""
    return string(name if utf8 else mutf7.encode(name), utf8)


def encode(value: Value, utf8: bool = False) -> bytes:
    if value is None:
        return b"NIL"
    if isinstance(value, bool):
        raise TypeError("bool is not an IMAP value")
    if isinstance(value, int):
        return str(value).encode("ascii")
    if isinstance(value, Atom):
        return value.text.encode("utf-8")
    if isinstance(value, Raw):
        return value.data
    if isinstance(value, Literal8):
        return b"~{%d}\r\n" % len(value.data) + value.data
    if isinstance(value, str | bytes):
        return string(value, utf8)
    return b"(" + b" ".join(encode(v, utf8) for v in value) + b")"


def _clean(text: str) -> bytes:
    """resp-text: no CR/LF; a leading "[" would read as a response code."""
    out = " ".join(text.replace("\r", " ").replace("\n", " ").split())
    if out.startswith("["):
        out = " " + out
    return out.encode("utf-8", "replace")


def code(name: str, *args: Value) -> str:
    parts = [name] + [encode(a).decode("utf-8", "replace") for a in args]
    return " ".join(parts)


def tagged(tag: str, status: str, text: str, resp_code: str | None = None) -> bytes:
    """tag OK/NO/BAD [code] text (RFC 9051 §7.1)."""
    head = f"{tag} {status} ".encode("ascii")
    if resp_code:
        head += b"[" + resp_code.encode("utf-8") + b"] "
    return head + (_clean(text) or b"done") + CRLF


def untagged_status(status: str, text: str, resp_code: str | None = None) -> bytes:
    """* OK/NO/BAD/PREAUTH/BYE [code] text."""
    return tagged("*", status, text, resp_code)


def bye(text: str, resp_code: str | None = None) -> bytes:
    return untagged_status("BYE", text, resp_code)


def untagged(*parts: Value, utf8: bool = False) -> bytes:
    """ "* " + the values separated by spaces: e.g. untagged(3, Atom("EXISTS"))."""
    return b"* " + b" ".join(encode(p, utf8) for p in parts) + CRLF


def continuation(text: str = "Ready for literal data") -> bytes:
    return b"+ " + _clean(text) + CRLF


def continuation_data(data: bytes) -> bytes:
    """An AUTHENTICATE challenge: base64, "+ " alone for empty (RFC 9051 §6.2.2)."""
    return b"+ " + base64.b64encode(data) + CRLF


def flags(values: Iterable[str]) -> list[Value]:
    return [Atom(f) for f in values]


def date_time(when: dt.datetime) -> str:
    """date-time: "dd-Mon-yyyy hh:mm:ss +zzzz" (RFC 9051 §9; day padded with a space)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    offset = when.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return (
        f"{when.day:2d}-{_MONTHS[when.month - 1]}-{when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {sign}{minutes // 60:02d}{minutes % 60:02d}"
    )


def fetch_response(seq: int, items: Sequence[tuple[str, Value]], utf8: bool = False) -> bytes:
    """* seq FETCH (name value ...) (RFC 9051 §7.5.2); names are written as
    given (FetchAtt.response_name())."""
    body = b" ".join(name.encode("ascii") + b" " + encode(value, utf8) for name, value in items)
    return b"* %d FETCH (" % seq + body + b")" + CRLF


def list_response(
    attributes: Iterable[str],
    delimiter: str | None,
    name: str,
    utf8: bool,
    verb: str = "LIST",
    extra: Sequence[Value] = (),
) -> bytes:
    """* LIST (\\HasNoChildren) "/" "INBOX" (RFC 9051 §7.3.1)."""
    parts: list[bytes] = [
        verb.encode("ascii"),
        encode(flags(attributes)),
        encode(delimiter),
        mailbox(name, utf8),
    ]
    if extra:
        parts.append(encode(extra, utf8))
    return b"* " + b" ".join(parts) + CRLF


def status_response(name: str, items: Sequence[tuple[str, int]], utf8: bool) -> bytes:
    """* STATUS "name" (MESSAGES 3 UIDNEXT 4) (RFC 9051 §7.4)."""
    body = " ".join(f"{k} {v}" for k, v in items).encode("ascii")
    return b"* STATUS " + mailbox(name, utf8) + b" (" + body + b")" + CRLF


def search_response(numbers: Iterable[int], modseq: int | None = None) -> bytes:
    """* SEARCH 2 3 [(MODSEQ n)] (RFC 3501 §7.2.5, RFC 7162 §3.1.5)."""
    out = b"* SEARCH"
    nums = b" ".join(str(n).encode("ascii") for n in numbers)
    if nums:
        out += b" " + nums
    if modseq is not None and nums:
        out += b" (MODSEQ %d)" % modseq
    return out + CRLF


def esearch_response(tag: str, uid: bool, results: Sequence[tuple[str, int | str]]) -> bytes:
    """* ESEARCH (TAG "a1") [UID] MIN 2 COUNT 3 (RFC 4731 §3.1, RFC 9051 §7.3.4)."""
    out = b"* ESEARCH (TAG " + string(tag) + b")"
    if uid:
        out += b" UID"
    for name, value in results:
        out += f" {name} {value}".encode("ascii")
    return out + CRLF
