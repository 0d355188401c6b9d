"""Fuzz targets of the IMAP protocol core (pigeon.proto.imap), for hypothesis and atheris.

imap_reader_target  CommandReader fed the bytes in pieces (first octet: the
                    piece size; second: the literal limit), switching to the
                    IDLE / AUTHENTICATE line modes when those commands come:
                    only the documented events, never an exception, and
                    after every drain at most max(max_line, max_literal)
                    octets kept (bounded memory); every Command's tag is
                    valid and a Bad's text is one line.
imap_mime_target    parse_structure + every content FETCH item + the text
                    SEARCH keys on arbitrary octets: only UnknownEncoding
                    (BINARY of an unknown encoding) may be raised; the
                    responses read back balanced; the cache form round-trips.
mutf7_target        decode either refuses (ValueError) or is undone exactly
                    by encode.
"""

from __future__ import annotations

import datetime as dt
import json

from pigeon.proto.imap import mutf7
from pigeon.proto.imap import response as R
from pigeon.proto.imap.commands import Command
from pigeon.proto.imap.fetchrender import content_item
from pigeon.proto.imap.fetchspec import parse_fetch_atts
from pigeon.proto.imap.lexer import TAG_CHARS, Cursor, RawCommand
from pigeon.proto.imap.mime import Part, bodystructure, parse_structure
from pigeon.proto.imap.reader import (
    AuthResponse,
    Bad,
    CommandReader,
    Continue,
    IdleDone,
    LineTooLong,
    TooBig,
)
from pigeon.proto.imap.search import Message, SearchContext, matches
from pigeon.proto.imap.searchparse import HeaderKey, TextKey
from pigeon.proto.imap.sections import UnknownEncoding

EVENTS = (Command, Continue, Bad, TooBig, LineTooLong, IdleDone, AuthResponse)


def run_reader(data: bytes, split: int, max_literal: int) -> list[object]:
    reader = CommandReader(max_literal=max_literal, max_line=1024, max_command=4096)
    out: list[object] = []
    for start in range(0, len(data), split):
        reader.receive(data[start : start + split])
        while (event := reader.next_event()) is not None:
            assert isinstance(event, EVENTS), event
            out.append(event)
            if isinstance(event, Command):
                assert event.tag and all(c in TAG_CHARS for c in event.tag.encode())
                if event.name == "IDLE":
                    reader.expect_idle_done()
                elif event.name == "AUTHENTICATE":
                    reader.expect_auth_response()
            if isinstance(event, Bad):
                assert "\r" not in event.text and "\n" not in event.text
            if isinstance(event, TooBig) and event.close:
                return out
        assert reader.buffered <= max(reader.max_line, reader.max_literal), reader.buffered
    return out


def imap_reader_target(data: bytes) -> None:
    if len(data) < 2:
        return
    split = data[0] % 64 + 1
    max_literal = (data[1] % 16) * 8
    run_reader(data[2:], split, max_literal)


ALL_ITEMS = (
    b"(ENVELOPE BODYSTRUCTURE BODY RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE BODY[] "
    b"BODY[1] BODY[1.MIME] BODY[2.1] BODY[1.2.HEADER] BODY[2.TEXT] BODY[HEADER.FIELDS (From To)] "
    b"BODY[HEADER.FIELDS.NOT (Subject)] BODY[TEXT]<3.7>)"
)
ATTS = parse_fetch_atts(Cursor(RawCommand((ALL_ITEMS,), ())))
BINARY = parse_fetch_atts(Cursor(RawCommand((b"(BINARY[1] BINARY[2.1] BINARY.SIZE[1])",), ())))


def imap_mime_target(data: bytes) -> None:
    root = parse_structure(data)
    items = [content_item(a, data, root) for a in ATTS]
    out = R.fetch_response(1, items)
    assert out.startswith(b"* 1 FETCH (") and out.endswith(b")\r\n")
    for att in BINARY:
        try:
            content_item(att, data, root)
        except UnknownEncoding:
            pass
    assert bodystructure(root).count(b"(") >= 1
    assert Part.from_data(json.loads(json.dumps(root.to_data()))) == root
    msg = Message(
        1, 1, frozenset(), len(data), dt.datetime(2024, 1, 1, tzinfo=dt.UTC), 1, lambda: data
    )
    ctx = SearchContext(1, 1)
    for key in (
        HeaderKey("Subject", "x"),
        HeaderKey("From", ""),
        TextKey(True, "é"),
        TextKey(False, "a"),
    ):
        matches(key, msg, ctx)


def mutf7_target(data: bytes) -> None:
    text = data.decode("latin-1")
    try:
        decoded = mutf7.decode(text)
    except ValueError:
        return
    assert mutf7.encode(decoded) == text
    assert mutf7.decode(mutf7.encode(decoded)) == decoded
