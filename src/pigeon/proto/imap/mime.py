"""MIME structure of a message: BODYSTRUCTURE and BODY (RFC 9051 §7.5.2, RFC 2045/2046).

Contract:
  * `parse_structure(data)` reads a message (octets, CRLF line ends as the
    store keeps them; bare LF tolerated) into a tree of `Part`s: each with
    the offsets of its header and body in `data`, its Content-* fields
    (values raw, as IMAP returns them: RFC 2231 and encoded-words are not
    decoded), its body's size and line count, its children (multipart) or
    the encapsulated message (message/rfc822, message/global). Header fields
    are read by the standard library's `email` header parser
    (envelope.header_fields); the body is split on the boundary lines of
    RFC 2046 §5.1.1 by offsets, so sizes and sections are exact octets.
  * Bounded: nesting deeper than `MAX_DEPTH`, or parts past `MAX_PARTS`,
    are not descended into: such a part is served flat, as one opaque
    "application/octet-stream" leaf (its octets still fetchable by part
    number). No recursion beyond MAX_DEPTH, so no RecursionError; malformed
    headers, missing boundaries and 8-bit garbage give some structure, never
    an exception.
  * The tree is a plain value: picklable, and `Part.to_data()` /
    `Part.from_data()` turn it into JSON-able lists and back, so the server
    computes it once per message and caches it.
  * `bodystructure(part, extended)` encodes BODYSTRUCTURE (extended: with
    the extension data) or BODY (not extended) as octets, written as Dovecot
    writes them (8-bit values as literals, so the bytes suit every client).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from pigeon.proto.imap import response as R
from pigeon.proto.imap.envelope import encode_envelope, envelope, first, header_fields

MAX_DEPTH = 50
MAX_PARTS = 2000
MAX_PARAMS = 100  # parameters kept per Content-Type / Content-Disposition


@dataclass(frozen=True, slots=True)
class Part:
    start: int  # first octet of the header
    body_start: int  # first octet of the body (after the blank line)
    end: int  # one past the last octet of the body
    type: str
    subtype: str
    params: tuple[tuple[str, str], ...]
    id: str | None
    description: str | None
    encoding: str
    md5: str | None
    disposition: tuple[str, tuple[tuple[str, str], ...]] | None
    language: tuple[str, ...]
    location: str | None
    lines: int
    children: tuple[Part, ...] = ()
    message: Part | None = None  # message/rfc822: the encapsulated message
    envelope: list[R.Value] | None = None  # message/rfc822: its ENVELOPE

    @property
    def size(self) -> int:
        return self.end - self.body_start

    @property
    def is_multipart(self) -> bool:
        return self.type.lower() == "multipart" and bool(self.children)

    def to_data(self) -> list[object]:
        return [
            self.start,
            self.body_start,
            self.end,
            self.type,
            self.subtype,
            [list(p) for p in self.params],
            self.id,
            self.description,
            self.encoding,
            self.md5,
            None
            if self.disposition is None
            else [self.disposition[0], [list(p) for p in self.disposition[1]]],
            list(self.language),
            self.location,
            self.lines,
            [c.to_data() for c in self.children],
            None if self.message is None else self.message.to_data(),
            self.envelope,
        ]

    @classmethod
    def from_data(cls, d: list[Any]) -> Part:
        def pairs(v: list[list[str]]) -> tuple[tuple[str, str], ...]:
            return tuple((str(a), str(b)) for a, b in v)

        dsp = d[10]
        return cls(
            int(d[0]),
            int(d[1]),
            int(d[2]),
            str(d[3]),
            str(d[4]),
            pairs(d[5]),
            d[6],
            d[7],
            str(d[8]),
            d[9],
            None if dsp is None else (str(dsp[0]), pairs(dsp[1])),
            tuple(d[11]),
            d[12],
            int(d[13]),
            tuple(cls.from_data(c) for c in d[14]),
            None if d[15] is None else cls.from_data(d[15]),
            d[16],
        )


def _split_params(text: str) -> list[str]:
    """Split at ";" outside quoted strings, in one pass (a regular expression
    with a look-ahead would be quadratic on a hostile header)."""
    pieces: list[str] = []
    start = 0
    quoted = escaped = False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == ";" and not quoted:
            pieces.append(text[start:i])
            start = i + 1
            if len(pieces) > MAX_PARAMS:
                return pieces
    pieces.append(text[start:])
    return pieces


def parse_params(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """ "value; a=1; b="x y"" -> ("value", (("a", "1"), ("b", "x y"))), raw (RFC 2045 §5.1)."""
    pieces = _split_params(text)
    params: list[tuple[str, str]] = []
    for piece in pieces[1:]:
        key, eq, value = piece.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            continue
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params.append((key, value))  # names as written (Dovecot keeps "Charset")
    return pieces[0].strip(), tuple(params[:MAX_PARAMS])


def header_end(data: bytes, start: int, end: int) -> int:
    """Offset of the body: after the first empty line, or `end` (RFC 5322 §2.1)."""
    if data.startswith(b"\r\n", start):
        return start + 2
    if data.startswith(b"\n", start):
        return start + 1
    crlf = data.find(b"\r\n\r\n", start, end)
    lf = data.find(b"\n\n", start, end)
    if crlf != -1 and (lf == -1 or crlf + 1 <= lf):
        return crlf + 4
    if lf != -1:
        return lf + 2
    return end


def _boundaries(data: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """(part start, part end) between the delimiter lines of RFC 2046 §5.1.1."""
    delim = b"--" + boundary
    spans: list[tuple[int, int]] = []
    part_start = -1
    pos = start
    while True:
        i = data.find(delim, pos, end)
        if i == -1:
            break
        pos = i + len(delim)
        if i != start and data[i - 1] != 0x0A:  # not at a line start
            continue
        close = data.startswith(b"--", pos)
        eol = data.find(b"\n", pos, end)
        rest = data[pos + (2 if close else 0) : end if eol == -1 else eol]
        if rest.strip(b" \t\r"):
            continue  # "--boundaryX": another boundary that starts alike
        line_start = i - 2 if data[i - 2 : i] == b"\r\n" else i - 1 if i > start else i
        if part_start != -1:
            spans.append((part_start, max(part_start, line_start)))
        if close or eol == -1:
            part_start = -1
            break
        part_start = eol + 1
        pos = eol + 1
        if len(spans) >= MAX_PARTS:
            break
    if part_start != -1:  # no close delimiter: the last part runs to the end
        spans.append((part_start, end))
    return spans[:MAX_PARTS]


class _Budget:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts = 0


def _language(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _parse(
    data: bytes, start: int, end: int, depth: int, default: tuple[str, str], budget: _Budget
) -> Part:
    budget.parts += 1
    body_start = header_end(data, start, end)
    fields = header_fields(data[start:body_start])
    ctype = first(fields, "Content-Type")
    mtype, msub = default
    params: tuple[tuple[str, str], ...] = (
        (("charset", "us-ascii"),) if default == ("text", "plain") else ()
    )
    if ctype is not None:
        value, ctparams = parse_params(ctype)
        t, slash, s = value.partition("/")
        if value:  # "text" alone: subtype "" (as Dovecot)
            mtype, msub, params = t.strip(), s.strip() if slash else "", ctparams
    dsp_value = first(fields, "Content-Disposition")
    disposition = None
    if dsp_value:
        dtype, dparams = parse_params(dsp_value)
        disposition = (dtype, dparams) if dtype else None
    lower = (mtype.lower(), msub.lower())
    too_deep = depth >= MAX_DEPTH or budget.parts >= MAX_PARTS
    children: tuple[Part, ...] = ()
    message = None
    env = None
    if lower[0] == "multipart" and not too_deep:
        boundary = next((v for k, v in params if k.lower() == "boundary"), "")
        child_default = ("message", "rfc822") if lower[1] == "digest" else ("text", "plain")
        spans = (
            _boundaries(data, body_start, end, boundary.encode("utf-8", "surrogateescape"))
            if boundary
            else []
        )
        children = tuple(_parse(data, a, b, depth + 1, child_default, budget) for a, b in spans)
        # a multipart inside keeps the line break before our next delimiter
        # (its epilogue), as Dovecot's BODY[n] of it shows
        children = tuple(_with_epilogue(data, c, end) for c in children)
        if not children:  # no boundary or no part: one empty text/plain part (as Dovecot)
            children = (_empty_part(end),)
    elif lower in (("message", "rfc822"), ("message", "global")) and not too_deep:
        message = _parse(data, body_start, end, depth + 1, ("text", "plain"), budget)
        env = envelope(header_fields(data[body_start : message.body_start]))
    if too_deep and (
        lower[0] == "multipart" or lower in (("message", "rfc822"), ("message", "global"))
    ):
        # served flat (RFC 2046 §5.1.1 without parts, or past the bounds)
        mtype, msub, params = "application", "octet-stream", ()
    if mtype.lower() == "text" and not any(k.lower() == "charset" for k, _ in params):
        params += (("charset", "us-ascii"),)  # RFC 2045 §5.2 default, written out as Dovecot does
    body = data[body_start:end]
    textual = lower[0] == "text" or message is not None
    return Part(
        start,
        body_start,
        end,
        mtype,
        msub,
        params,
        first(fields, "Content-ID"),
        first(fields, "Content-Description"),
        first(fields, "Content-Transfer-Encoding") or "7bit",
        first(fields, "Content-MD5"),
        disposition,
        _language(first(fields, "Content-Language")),
        first(fields, "Content-Location"),
        body.count(b"\n") if textual else 0,
        children,
        message,
        env,
    )


def _with_epilogue(data: bytes, part: Part, limit: int) -> Part:
    if not part.is_multipart:
        return part
    stop = part.end
    if data.startswith(b"\r\n", stop) and stop + 2 <= limit:
        stop += 2
    elif data.startswith(b"\n", stop) and stop + 1 <= limit:
        stop += 1
    return dataclasses.replace(part, end=stop)


def _empty_part(at: int) -> Part:
    return Part(
        at,
        at,
        at,
        "text",
        "plain",
        (("charset", "us-ascii"),),
        None,
        None,
        "7bit",
        None,
        None,
        (),
        None,
        0,
    )


def parse_structure(data: bytes) -> Part:
    return _parse(data, 0, len(data), 0, ("text", "plain"), _Budget())


def message_envelope(data: bytes, root: Part) -> list[R.Value]:
    return envelope(header_fields(data[root.start : root.body_start]))


def _plist(pairs: tuple[tuple[str, str], ...]) -> R.Value:
    if not pairs:
        return None
    return [x for pair in pairs for x in pair]


def _value(part: Part, extended: bool) -> bytes:
    enc = R.encode
    if part.is_multipart:
        out = b"(" + b"".join(_value(c, extended) for c in part.children)
        out += b" " + enc(part.subtype)
        if extended:
            ext: list[R.Value] = [
                _plist(part.params),
                _disposition(part),
                _lang(part),
                part.location,
            ]
            out += b" " + b" ".join(enc(v) for v in ext)
        return out + b")"
    fields: list[R.Value] = [
        part.type,
        part.subtype,
        _plist(part.params),
        part.id,
        part.description,
        part.encoding,
        part.size,
    ]
    out = b"(" + b" ".join(enc(v) for v in fields)
    if part.message is not None:
        out += b" " + encode_envelope(part.envelope or []) + b" " + _value(part.message, extended)
        out += b" %d" % part.lines
    elif part.type.lower() == "text":
        out += b" %d" % part.lines
    if extended:
        ext1: list[R.Value] = [part.md5, _disposition(part), _lang(part), part.location]
        out += b" " + b" ".join(enc(v) for v in ext1)
    return out + b")"


def _disposition(part: Part) -> R.Value:
    if part.disposition is None:
        return None
    return [part.disposition[0], _plist(part.disposition[1])]


def _lang(part: Part) -> R.Value:
    if not part.language:
        return None
    return part.language[0] if len(part.language) == 1 else list(part.language)


def bodystructure(part: Part, extended: bool = True) -> bytes:
    """BODYSTRUCTURE (extended) or BODY octets for the FETCH response (RFC 9051 §7.5.2)."""
    return _value(part, extended)
